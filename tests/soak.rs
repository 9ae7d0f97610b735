//! `scripts/soak` itself, for a short run against the binary under test
//! (`WASP_BIN`): it starts the demo, drives ESP load, capture files,
//! reloads and connection bursts, and reports zero failures.

mod support;

use std::process::Command;

#[test]
fn a_short_soak_passes_with_zero_failures() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/soak"))
        .args(["--seconds", "20", "--interval", "2", "--rate", "200"])
        .env("WASP_BIN", env!("CARGO_BIN_EXE_wasp"))
        .env("WASP_CACHE_DIR", support::cache_dir())
        .output()
        .expect("run scripts/soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        out.status.success(),
        "scripts/soak failed: {}\n{all}",
        out.status
    );
    assert!(stdout.contains("soak: OK"), "{all}");
    // Load went through, and the bursts met the connection limit, which
    // /metrics counted.
    let requests = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("requests: ok "))
        .unwrap_or_else(|| panic!("no requests line\n{all}"));
    let ok: u64 = requests.split_whitespace().next().unwrap().parse().unwrap();
    assert!(ok > 0, "{all}");
    assert!(requests.contains(" failed 0 "), "{all}");
    let limits = stdout
        .lines()
        .find(|l| l.trim().starts_with("limits: "))
        .unwrap_or_else(|| panic!("no limits line\n{all}"));
    assert!(!limits.contains(": 0 refused"), "{all}");
    // Interval lines came out.
    assert!(
        stdout.lines().filter(|l| l.starts_with('[')).count() >= 3,
        "{all}"
    );
}
