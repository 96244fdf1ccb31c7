//! The CI variant of the chaos run: 60 s of kills, stops, client and reader churn and bad
//! requests against the real tree; every "must" of the summary has to hold.

use std::process::Command;

use billiards_tests::TreePermit;

#[test]
fn chaos_60s_variant_passes_every_must() {
    // The run is a whole tree plus 25 client and reader processes: keep other trees out.
    let _a = TreePermit::acquire();
    let _b = TreePermit::acquire();
    let out = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args([
            "--seconds",
            "60",
            "--width",
            "640",
            "--height",
            "360",
            "--seed",
            "7",
        ])
        .output()
        .expect("run chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("chaos printed no JSON summary ({e}):\n{stdout}\n{stderr}"));
    assert!(out.status.success(), "a must failed:\n{stdout}\n{stderr}");
    assert_eq!(summary["pass"], true, "{stdout}");
    // Faults really happened and the tree came back from each.
    let faults = summary["faults"].as_object().unwrap();
    let injected: u64 = faults
        .iter()
        .filter(|(k, _)| k.starts_with("sig"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert!(injected >= 3, "too few faults injected: {stdout}");
    for f in summary["fault_log"].as_array().unwrap() {
        assert!(
            !f["recovered_after_s"].is_null(),
            "a worker did not come back: {f}"
        );
    }
    assert!(
        summary["http"]["frames_received"].as_u64().unwrap() > 1000,
        "{stdout}"
    );
    assert!(
        summary["readers"]["frames_read"].as_u64().unwrap() > 500,
        "{stdout}"
    );
    assert_eq!(summary["readers"]["torn_frames_delivered"], 0);
}
