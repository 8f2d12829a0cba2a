//! The JSON reports and the generated section of docs/PERFORMANCE.md.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::net::BoxError;

pub const BEGIN: &str = "<!-- BEGIN GENERATED: skyhook-bench (do not edit by hand) -->";
pub const END: &str = "<!-- END GENERATED: skyhook-bench -->";
const SECTIONS: [&str; 3] = ["serve", "lambda", "awsCalls"];

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": kernel,
        "loadAverage": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}

pub fn write(out: &Path, section: Option<(&str, Value)>, doc: &str) -> Result<(), BoxError> {
    std::fs::create_dir_all(out)?;
    if let Some((name, mut value)) = section {
        value["measuredAt"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        value["machine"] = machine();
        let path = out.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&value)? + "\n")?;
        eprintln!("wrote {}", path.display());
    }
    let mut report = json!({});
    for name in SECTIONS {
        if let Ok(text) = std::fs::read_to_string(out.join(format!("{name}.json"))) {
            report[name] = serde_json::from_str(&text)?;
        }
    }
    let path = out.join("report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    eprintln!("wrote {}", path.display());
    if doc != "-" {
        let generated = render(&report);
        let existing = std::fs::read_to_string(doc).unwrap_or_default();
        let updated = match (existing.find(BEGIN), existing.find(END)) {
            (Some(b), Some(e)) if b < e => {
                format!("{}{BEGIN}\n{generated}{END}{}", &existing[..b], &existing[e + END.len()..])
            }
            _ => format!("{existing}\n{BEGIN}\n{generated}{END}\n"),
        };
        std::fs::write(doc, updated)?;
        eprintln!("updated {doc}");
    }
    Ok(())
}

fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 1e15 { format!("{}", f as i64) } else { format!("{f:.2}") }
        }
        Value::Null => "—".into(),
        other => other.to_string().trim_matches('"').to_string(),
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn mark(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

pub fn render(report: &Value) -> String {
    let mut md = String::new();
    let mut targets: Vec<(String, String, String, bool)> = Vec::new();
    if let Some(serve) = report.get("serve") {
        let _ = writeln!(md, "### `skyhook serve` (embedded SQLite, every 202 fsync'd)\n");
        let _ = writeln!(
            md,
            "Measured {} on {} CPUs ({}), load average at the end {}{}. Payload {} bytes of JSON per publish.\n",
            num(&serve["measuredAt"]),
            num(&serve["machine"]["cpus"]),
            num(&serve["machine"]["cpu"]),
            num(&serve["machine"]["loadAverage"]),
            if serve["smoke"].as_bool().unwrap_or(false) { " — **smoke run, not a measurement**" } else { "" },
            num(&serve["payloadBytes"]),
        );
        let c = &serve["ceilings"];
        let _ = writeln!(md, "| machine ceiling (same run) | value |\n|---|---|");
        let _ = writeln!(
            md,
            "| raw loopback POST, same client and receiver, {} connections | {} /s |",
            num(&c["loopbackPost"]["concurrency"]),
            num(&c["loopbackPost"]["postsPerSec"])
        );
        let _ = writeln!(
            md,
            "| HMAC-SHA256 Standard Webhooks signature, {}-byte body, one core | {} /s |",
            num(&c["hmac"]["bodyBytes"]),
            num(&c["hmac"]["signaturesPerSecPerCore"])
        );
        let _ = writeln!(
            md,
            "| 4 KiB write + fdatasync, temp dir, one writer | {} /s |\n",
            num(&c["fsync"]["fsyncsPerSec"])
        );
        let loopback = f(&c["loopbackPost"]["postsPerSec"]);
        let _ = writeln!(
            md,
            "| sustained throughput | publishers | events | events/s | deliveries/s | vs raw loopback POST | publish p50 / p99 ms | publish→first attempt p50 / p99 / max ms | undelivered |\n|---|---|---|---|---|---|---|---|---|"
        );
        for t in serve["throughput"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.0} % | {} / {} | {} / {} / {} | {} |",
                t["label"].as_str().map(str::to_string).unwrap_or_else(|| format!("fan-out {}", num(&t["fanout"]))),
                num(&t["concurrency"]),
                num(&t["events"]),
                num(&t["eventsPerSec"]),
                num(&t["deliveriesPerSec"]),
                100.0 * f(&t["deliveriesPerSec"]) / loopback,
                num(&t["publish"]["p50_ms"]),
                num(&t["publish"]["p99_ms"]),
                num(&t["publishToFirstAttempt"]["p50_ms"]),
                num(&t["publishToFirstAttempt"]["p99_ms"]),
                num(&t["publishToFirstAttempt"]["max_ms"]),
                num(&t["undelivered"]),
            );
            if t.get("label").is_some() {
                continue; // no target: the delivery controls' own figure
            }
            let fanout = t["fanout"].as_u64().unwrap_or(0);
            let want = if fanout == 1 { 5000.0 } else { 10000.0 };
            targets.push((
                format!("serve: sustained deliveries/s at fan-out {fanout}"),
                format!("≥ {want:.0}"),
                num(&t["deliveriesPerSec"]),
                f(&t["deliveriesPerSec"]) >= want && t["undelivered"].as_u64() == Some(0),
            ));
        }
        let _ = writeln!(
            md,
            "\n| offered rate (fan-out 1) | accepted | achieved/s | publish p50 / p99 / max ms | publish→first attempt p50 / p99 / max ms | errors | undelivered |\n|---|---|---|---|---|---|---|"
        );
        for r in serve["fixedRates"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "| {} /s for {} s | {} | {} | {} / {} / {} | {} / {} / {} | {} | {} |",
                num(&r["offeredPerSec"]),
                num(&r["seconds"]),
                num(&r["accepted"]),
                num(&r["achievedPerSec"]),
                num(&r["publish"]["p50_ms"]),
                num(&r["publish"]["p99_ms"]),
                num(&r["publish"]["max_ms"]),
                num(&r["publishToFirstAttempt"]["p50_ms"]),
                num(&r["publishToFirstAttempt"]["p99_ms"]),
                num(&r["publishToFirstAttempt"]["max_ms"]),
                num(&r["errors"]),
                num(&r["undelivered"]),
            );
            if r["offeredPerSec"].as_u64() == Some(1000) {
                targets.push((
                    "serve: publish p99 at 1,000/s".into(),
                    "≤ 20 ms".into(),
                    num(&r["publish"]["p99_ms"]),
                    f(&r["publish"]["p99_ms"]) <= 20.0,
                ));
                targets.push((
                    "serve: publish→delivered p99 at 1,000/s".into(),
                    "≤ 50 ms".into(),
                    num(&r["publishToFirstAttempt"]["p99_ms"]),
                    f(&r["publishToFirstAttempt"]["p99_ms"]) <= 50.0,
                ));
            }
        }
        let rss = &serve["server"]["peakRssMiB"];
        let _ = writeln!(
            md,
            "\nServer peak RSS (VmHWM over the whole run): **{} MiB**. Repeated deliveries seen: {}.\n",
            num(rss),
            num(&serve["repeats"])
        );
        targets.push(("serve: peak RSS".into(), "≤ 30 MiB".into(), format!("{} MiB", num(rss)), f(rss) <= 30.0));
    }
    if let Some(lambda) = report.get("lambda") {
        let _ = writeln!(md, "### Lambda functions (release build, local Runtime API emulator, moto behind)\n");
        let _ = writeln!(
            md,
            "Measured {}; {} cold starts per function; init = process start → first `next` poll (configuration, secret read, SDK clients); first invocation = event handed over → response posted (includes moto's latency, which is not AWS's).\n",
            num(&lambda["measuredAt"]),
            num(&lambda["runs"])
        );
        let _ = writeln!(
            md,
            "| function | stripped size MB | init median ms | init p90 ms | first invocation median ms | peak RSS MB (max) |\n|---|---|---|---|---|---|"
        );
        let (mut max_init, mut max_rss, mut max_size) = (0.0f64, 0.0f64, 0.0f64);
        for fun in lambda["functions"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                num(&fun["name"]),
                num(&fun["sizeMB"]),
                num(&fun["initMedianMs"]),
                num(&fun["initP90Ms"]),
                num(&fun["firstInvocationMedianMs"]),
                num(&fun["peakRssMB"]),
            );
            max_init = max_init.max(f(&fun["initMedianMs"]));
            max_rss = max_rss.max(f(&fun["peakRssMB"]));
            max_size = max_size.max(f(&fun["sizeMB"]));
        }
        md.push('\n');
        targets.push((
            "lambda: init median (worst function)".into(),
            "≤ 20 ms".into(),
            format!("{max_init:.1} ms"),
            max_init <= 20.0,
        ));
        targets.push((
            "lambda: peak RSS (worst function)".into(),
            "≤ 40 MB".into(),
            format!("{max_rss:.1} MB"),
            max_rss <= 40.0,
        ));
        targets.push((
            "lambda: stripped binary (largest)".into(),
            "≤ 15 MB".into(),
            format!("{max_size:.1} MB"),
            max_size <= 15.0,
        ));
    }
    if let Some(aws) = report.get("awsCalls") {
        let _ = writeln!(md, "### AWS calls per unit of work (counted at a proxy in front of moto)\n");
        let _ = writeln!(md, "Measured {}. {}\n", num(&aws["measuredAt"]), num(&aws["method"]));
        for scenario in aws["scenarios"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "**{}** — {} event(s), {} deliveries; per delivery: {} DynamoDB WRU, {} RRU, {} SQS requests, {} Lambda invocations.\n",
                num(&scenario["name"]),
                num(&scenario["events"]),
                num(&scenario["deliveries"]),
                num(&scenario["perDelivery"]["wru"]),
                num(&scenario["perDelivery"]["rru"]),
                num(&scenario["perDelivery"]["sqsRequests"]),
                num(&scenario["perDelivery"]["lambdaInvocations"]),
            );
            let _ = writeln!(md, "| caller | call | count |\n|---|---|---|");
            for call in scenario["calls"].as_array().into_iter().flatten() {
                let _ = writeln!(md, "| {} | {} | {} |", num(&call["caller"]), num(&call["call"]), num(&call["count"]));
            }
            let _ = writeln!(md, "\n| cost per 1M deliveries | USD |\n|---|---|");
            for (item, usd) in scenario["costPerMillion"].as_object().into_iter().flatten() {
                let _ = writeln!(md, "| {item} | {:.3} |", f(usd));
            }
            md.push('\n');
            if let Some(target) = scenario["target"].as_f64() {
                let total = f(&scenario["costPerMillion"]["total"]);
                targets.push((
                    format!("cost: {}", num(&scenario["name"])),
                    format!("≤ ${target:.2} / 1M"),
                    format!("${total:.2}"),
                    total <= target,
                ));
            }
        }
    }
    if !targets.is_empty() {
        let _ = writeln!(md, "### Targets\n\n| target | wanted | measured | |\n|---|---|---|---|");
        for (name, want, got, ok) in targets {
            let _ = writeln!(md, "| {name} | {want} | {got} | {} |", mark(ok));
        }
        md.push('\n');
    }
    md
}
