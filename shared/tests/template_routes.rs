//! Every route of the router is wired to its function in template.yaml, and
//! the template routes nothing the router does not serve.

use std::collections::BTreeSet;

use skyhook::api::ROUTES;

const TEMPLATE: &str = include_str!("../../template.yaml");

/// (method, path, function) for every HttpApi event in the template.
fn template_routes() -> BTreeSet<(String, String, String)> {
    let mut routes = BTreeSet::new();
    let mut function: Option<String> = None;
    for line in TEMPLATE.lines() {
        let trimmed = line.trim();
        if let Some(uri) = trimmed.strip_prefix("CodeUri: functions/") {
            function = Some(uri.trim().to_string());
        }
        if !line.starts_with("    ") && line.starts_with("  ") && trimmed.ends_with(':') {
            function = None; // a new resource
        }
        if trimmed.contains("Type: HttpApi") {
            let field = |name: &str| {
                let start = trimmed.find(&format!("{name}: ")).expect("field present") + name.len() + 2;
                let rest = &trimmed[start..];
                if let Some(quoted) = rest.strip_prefix('"') {
                    return quoted[..quoted.find('"').expect("closing quote")].to_string();
                }
                let end = rest.find([',', '}']).unwrap_or(rest.len());
                rest[..end].trim().to_string()
            };
            let function = function.clone().expect("HttpApi event inside a function with CodeUri");
            routes.insert((field("Method"), field("Path"), function));
        }
    }
    routes
}

#[test]
fn given_the_router_and_the_template_then_they_declare_the_same_routes_on_the_same_functions() {
    // GIVEN the router's table
    let router: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string(), r.resource.function_name().to_string()))
        .collect();
    // WHEN the template is read
    let template = template_routes();
    // THEN nothing is missing and nothing is extra
    let missing: Vec<_> = router.difference(&template).collect();
    let extra: Vec<_> = template.difference(&router).collect();
    assert!(missing.is_empty(), "routes missing from template.yaml: {missing:?}");
    assert!(extra.is_empty(), "template.yaml routes the router does not serve: {extra:?}");
    assert_eq!(template.len(), ROUTES.len());
}

#[test]
fn given_the_template_then_every_function_directory_exists() {
    for line in TEMPLATE.lines() {
        if let Some(uri) = line.trim().strip_prefix("CodeUri: ") {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(uri.trim()).join("Cargo.toml");
            assert!(path.exists(), "{} has no Cargo.toml", uri.trim());
        }
    }
}
