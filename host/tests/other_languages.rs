//! ESP services written in Python, JavaScript and C (examples/plugins/*),
//! loaded from their built `.wasm` files into clusters and called over
//! HTTP. `scripts/build-examples` builds them (scripts/test runs it first).

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{Value, json};

/// The built component's path; fails the test when it has not been built.
fn built(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/examples")
        .join(file);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-examples first (scripts/test does)",
        path.display()
    );
    path.canonicalize().unwrap().display().to_string()
}

fn result(status: u16, answer: &Value) -> &Value {
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Event"], "Event3rdServerResponse", "{answer}");
    &answer["Result"]
}

#[track_caller]
fn assert_component_fault(status: u16, answer: &Value, code: i64, text: &str) {
    assert_fault(status, answer, 422, 3005);
    assert_eq!(answer["ComponentFaultCode"], code, "{answer}");
    let message = answer["FaultString"].as_str().unwrap();
    assert!(message.contains(text), "{message:?} lacks {text:?}");
}

#[tokio::test]
async fn python_language_detection() {
    let s = serve(&format!(
        r#"
[clusters.lang]
service = "Language"
component = "{}"
tenants = [101, 102]
instances = 2
memory-mb = 256
timeout-ms = 10000
"#,
        built("language.wasm")
    ))
    .await;
    let cases = [
        (
            "The quick brown fox jumps over the lazy dog and runs into the forest",
            "en",
        ),
        (
            "Der schnelle braune Fuchs springt über den faulen Hund und läuft in den Wald",
            "de",
        ),
        (
            "Le renard brun rapide saute par-dessus le chien paresseux et court dans la forêt",
            "fr",
        ),
        (
            "El rápido zorro marrón salta sobre el perro perezoso y corre hacia el bosque",
            "es",
        ),
        (
            "La volpe marrone veloce salta sopra il cane pigro e corre nella foresta",
            "it",
        ),
        (
            "Bitte senden Sie mir die Rechnung noch einmal, ich kann sie nicht finden",
            "de",
        ),
        (
            "Could you please send me the invoice again, I cannot find it",
            "en",
        ),
        (
            "Pouvez-vous m'envoyer la facture encore une fois, je ne la trouve pas",
            "fr",
        ),
    ];
    for (text, lang) in cases {
        let (status, answer) = s
            .esp(
                "lang",
                "Language",
                "Detect",
                json!(102),
                json!({"Text": text}),
            )
            .await;
        let r = result(status, &answer);
        assert_eq!(r["Language"], lang, "{text}: {answer}");
        let confidence = r["Confidence"].as_i64().unwrap();
        assert!((1..=100).contains(&confidence), "{answer}");
        assert!(confidence >= 20, "{text}: low confidence {answer}");
        // Scores is a nested list (arena index 1): one score per language.
        assert_eq!(r["Scores"].as_object().unwrap().len(), 5, "{answer}");
        let best = r["Scores"][lang].as_i64().unwrap();
        assert!(
            r["Scores"]
                .as_object()
                .unwrap()
                .values()
                .all(|v| v.as_i64().unwrap() <= best)
        );
    }
    let (status, answer) = s
        .esp("lang", "Language", "Detect", json!(101), json!({}))
        .await;
    assert_component_fault(status, &answer, 2, "missing parameter 'Text'");
    let (status, answer) = s
        .esp(
            "lang",
            "Language",
            "Detect",
            json!(101),
            json!({"Text": 42}),
        )
        .await;
    assert_component_fault(status, &answer, 3, "must be a string");
    let (status, answer) = s
        .esp(
            "lang",
            "Language",
            "Detect",
            json!(101),
            json!({"Text": "12345 !!!"}),
        )
        .await;
    assert_component_fault(status, &answer, 4, "no words");
}

fn hours_cluster() -> String {
    format!(
        r#"
[clusters.hours]
service = "BusinessHours"
component = "{}"
tenants = [101]
instances = 2
memory-mb = 128
timeout-ms = 10000

[clusters.hours.config]
mon = "09:00-17:00"
tue = "09:00-17:00"
wed = "09:00-12:00,13:00-17:00"
thu = "09:00-17:00"
fri = "09:00-15:00"
timezone = "Europe/Berlin"
"#,
        built("business-hours.wasm")
    )
}

#[tokio::test]
async fn javascript_business_hours() {
    let s = serve(&hours_cluster()).await;
    let ask = |params: Value| {
        let s = &s;
        async move {
            s.esp("hours", "BusinessHours", "IsOpen", json!(101), params)
                .await
        }
    };
    // Monday 2024-06-03 10:00 in Berlin (CEST, +02:00) = 08:00 UTC: open,
    // closes at 17:00 local.
    let (status, answer) = ask(json!({"At": "2024-06-03T08:00:00Z"})).await;
    let r = result(status, &answer);
    assert_eq!(r["Open"], 1, "{answer}");
    assert_eq!(r["LocalTime"], "2024-06-03T10:00+02:00", "{answer}");
    assert_eq!(r["NextChangeLocal"], "2024-06-03T17:00+02:00", "{answer}");
    assert_eq!(r["NextChange"], 1717426800, "{answer}");

    // Wednesday lunch break, as Unix seconds: 2024-06-05 12:30 CEST.
    let (status, answer) = ask(json!({"At": 1717583400, "Timezone": "Europe/Berlin"})).await;
    let r = result(status, &answer);
    assert_eq!(r["Open"], 0, "{answer}");
    assert_eq!(r["NextChangeLocal"], "2024-06-05T13:00+02:00", "{answer}");

    // Friday 16:00 in winter (CET, +01:00): closed until Monday 09:00.
    let (status, answer) = ask(json!({"At": "2024-01-12T15:00:00Z"})).await;
    let r = result(status, &answer);
    assert_eq!(r["Open"], 0, "{answer}");
    assert_eq!(r["LocalTime"], "2024-01-12T16:00+01:00", "{answer}");
    assert_eq!(r["NextChangeLocal"], "2024-01-15T09:00+01:00", "{answer}");

    // The same instant in New York (EST, -05:00) is Friday 10:00: open.
    let (status, answer) =
        ask(json!({"At": "2024-01-12T15:00:00Z", "Timezone": "America/New_York"})).await;
    let r = result(status, &answer);
    assert_eq!(r["Open"], 1, "{answer}");
    assert_eq!(r["NextChangeLocal"], "2024-01-12T15:00-05:00", "{answer}");

    // A fixed offset, and "now" when At is left out.
    let (status, answer) = ask(json!({"Timezone": "+05:30"})).await;
    let r = result(status, &answer);
    assert!(r["Open"] == 0 || r["Open"] == 1, "{answer}");
    assert!(
        r["LocalTime"].as_str().unwrap().ends_with("+05:30"),
        "{answer}"
    );
    assert!(
        r["NextChange"].as_i64().unwrap() > 1_700_000_000,
        "{answer}"
    );

    let (status, answer) = ask(json!({"Timezone": "Mars/Olympus"})).await;
    assert_component_fault(status, &answer, 2, "unknown Timezone 'Mars/Olympus'");
    let (status, answer) = ask(json!({"At": "yesterday"})).await;
    assert_component_fault(status, &answer, 3, "not an ISO 8601 time");

    // Bad opening hours in the config are reported, naming the key (a second
    // cluster of the same component: compiled once, then from the cache).
    let s = serve(&hours_cluster().replace("\"09:00-15:00\"", "\"15:00-09:00\"")).await;
    let (status, answer) = s
        .esp("hours", "BusinessHours", "IsOpen", json!(101), json!({}))
        .await;
    assert_component_fault(status, &answer, 4, "config 'fri'");
}

/// Why `scripts/build-examples` skipped the C example (its toolchain
/// cannot be installed without root on this machine), if it did.
fn c_skipped() -> Option<String> {
    let marker =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/examples/ticket.skipped");
    std::fs::read_to_string(marker).ok()
}

#[tokio::test]
async fn c_ticket_validation() {
    if let Some(why) = c_skipped() {
        eprintln!("skipped: the C example was not built: {}", why.trim());
        return;
    }
    let s = serve(&format!(
        r#"
[clusters.tickets]
service = "Ticket"
component = "{}"
tenants = [101, 102]
instances = 2
"#,
        built("ticket.wasm")
    ))
    .await;
    let ask = |number: Value| {
        let s = &s;
        async move {
            s.esp(
                "tickets",
                "Ticket",
                "Validate",
                json!(101),
                json!({"TicketNumber": number}),
            )
            .await
        }
    };
    for (number, kind, year, serial) in [
        ("INC-2024-000123", "Incident", 2024, 12),
        ("REQ-2023-045673", "ServiceRequest", 2023, 4567),
        ("chg-2025-999992", "Change", 2025, 99999),
    ] {
        let (status, answer) = ask(json!(number)).await;
        let r = result(status, &answer);
        assert_eq!(r["Valid"], 1, "{number}: {answer}");
        assert_eq!(r["Kind"], kind, "{answer}");
        assert_eq!(r["Year"], year, "{answer}");
        assert_eq!(r["Serial"], serial, "{answer}");
    }
    // Well-formed, wrong check digit: not valid, with the reason.
    let (status, answer) = ask(json!("INC-2024-000124")).await;
    let r = result(status, &answer);
    assert_eq!(r["Valid"], 0, "{answer}");
    assert_eq!(r["Kind"], "Incident", "{answer}");
    assert_eq!(r["Reason"], "check digit is 4, expected 3", "{answer}");

    let (status, answer) = ask(json!("INC-24-000123")).await;
    assert_component_fault(status, &answer, 3, "'INC-24-000123' is not a ticket number");
    let (status, answer) = ask(json!("XYZ-2024-000123")).await;
    assert_component_fault(status, &answer, 4, "unknown ticket kind 'XYZ'");
    let (status, answer) = ask(json!(12)).await;
    assert_component_fault(status, &answer, 2, "'TicketNumber' must be a string");
    let (status, answer) = s
        .esp("tickets", "Ticket", "Validate", json!(101), json!({}))
        .await;
    assert_component_fault(status, &answer, 2, "missing parameter 'TicketNumber'");
}
