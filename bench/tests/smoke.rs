//! The benchmark harness in `--smoke` mode (seconds, no thresholds), so it
//! cannot rot: `skyhook-bench serve --smoke` against the workspace's
//! `skyhook` binary writes its JSON report and a generated document section.

use std::path::PathBuf;
use std::process::Command;

/// The `skyhook` binary of this build profile; built when missing (a lone
/// `cargo test -p skyhook-bench` does not build other packages' binaries).
fn skyhook_binary() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_skyhook-bench"));
    let path = bench.parent().expect("profile dir").join("skyhook");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = bench.parent().and_then(|d| d.file_name()).is_some_and(|n| n == "release");
        let mut build = Command::new(cargo);
        build
            .args(["build", "-p", "skyhook", "--bin", "skyhook"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if release {
            build.arg("--release");
        }
        assert!(build.status().expect("cargo runs").success(), "building skyhook failed");
    }
    path
}

#[test]
fn given_the_skyhook_binary_when_the_bench_runs_in_smoke_mode_then_it_measures_every_section_and_writes_its_reports() {
    // GIVEN a temporary output directory and document
    let out = std::env::temp_dir().join(format!("skyhook-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let doc = out.join("PERFORMANCE.md");
    std::fs::write(&doc, "# Performance\n\nHand-written text stays.\n").unwrap();

    // WHEN the bench runs the serve benchmark in smoke mode
    let status = Command::new(env!("CARGO_BIN_EXE_skyhook-bench"))
        .arg("--smoke")
        .arg("--out")
        .arg(&out)
        .arg("--doc")
        .arg(&doc)
        .arg("serve")
        .arg("--skyhook")
        .arg(skyhook_binary())
        .status()
        .expect("skyhook-bench runs");

    // THEN it succeeds and its JSON report has every measurement
    assert!(status.success(), "skyhook-bench --smoke serve failed");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let serve = &report["serve"];
    assert_eq!(serve["smoke"], true);
    assert!(serve["ceilings"]["loopbackPost"]["postsPerSec"].as_f64().unwrap() > 0.0);
    assert!(serve["ceilings"]["hmac"]["signaturesPerSecPerCore"].as_f64().unwrap() > 0.0);
    assert_eq!(serve["fixedRates"].as_array().unwrap().len(), 3);
    for rate in serve["fixedRates"].as_array().unwrap() {
        assert!(rate["accepted"].as_u64().unwrap() > 0, "{rate}");
        assert_eq!(rate["undelivered"], 0, "every accepted event was delivered: {rate}");
    }
    let throughput = serve["throughput"].as_array().unwrap();
    assert_eq!(throughput.iter().map(|t| t["fanout"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 10, 10]);
    // The third run is fan-out 10 with every endpoint filtered and ordered.
    assert!(throughput[2]["label"].as_str().unwrap().contains("ordered"));
    for run in throughput {
        assert!(run["deliveriesPerSec"].as_f64().unwrap() > 0.0, "{run}");
        assert_eq!(run["undelivered"], 0, "every accepted event was delivered: {run}");
    }
    assert!(serve["server"]["peakRssKiB"].as_u64().unwrap() > 0);

    // AND the document keeps its text and gains the generated section
    let text = std::fs::read_to_string(&doc).unwrap();
    assert!(text.starts_with("# Performance\n\nHand-written text stays.\n"));
    assert!(text.contains("BEGIN GENERATED: skyhook-bench"));
    assert!(text.contains("sustained throughput"));
    let _ = std::fs::remove_dir_all(&out);
}
