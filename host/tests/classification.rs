//! The bundled Classification service over HTTP: accuracy on the held-out
//! split of examples/classification/messages.tsv, screening, training.

mod common;

use common::*;
use serde_json::json;

const CLUSTER: &str = r#"
[clusters.classification]
service = "Classification"
component = "builtin:classification"
tenants = [101, 102]
instances = 2
[clusters.classification.config]
threshold = "5"
category-ids = "Billing=CAT-1,Delivery=CAT-2"
"screening.101" = """
Legal threat|SR-1|phrase|my lawyer
Rude word|SR-2|word|stupid
Card number|SR-3|regex|\\b\\d{4}[ -]?\\d{4}[ -]?\\d{4}[ -]?\\d{4}\\b
"""
[clusters.classification.store]
"#;

#[tokio::test]
async fn classify_is_accurate_on_the_held_out_split() {
    let s = serve(CLUSTER).await;
    let data = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/classification/messages.tsv"
    ))
    .unwrap();
    let held_out: Vec<(&str, &str)> = data
        .lines()
        .filter_map(|l| {
            let mut cols = l.splitn(3, '\t');
            match (cols.next(), cols.next(), cols.next()) {
                (Some(category), Some("test"), Some(text)) => Some((category, text)),
                _ => None,
            }
        })
        .collect();
    assert!(held_out.len() >= 90, "{}", held_out.len());
    let mut right = 0;
    for (category, text) in &held_out {
        let (status, answer) = s
            .esp(
                "classification",
                "Classification",
                "Classify",
                json!(101),
                json!({"Text": text}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let best = answer["Result"]["Categories"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .cloned();
        if best.as_deref() == Some(category) {
            right += 1;
        }
    }
    let accuracy = right as f64 / held_out.len() as f64;
    println!(
        "held-out accuracy: {right}/{} = {:.1}%",
        held_out.len(),
        accuracy * 100.0
    );
    // Chance is 1 in 6; 81% measured (README). Below 75% the model regressed.
    assert!(accuracy >= 0.75, "accuracy {accuracy:.3} below 0.75");
}

#[tokio::test]
async fn classify_reports_relevancies_best_first_with_ids() {
    let s = serve(CLUSTER).await;
    let (status, answer) = s
        .esp(
            "classification",
            "Classification",
            "Classify",
            json!(101),
            json!({"Text": "my parcel never arrived and the tracking number does not work", "RootCategory": "Support"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let cats = answer["Result"]["Categories"].as_object().unwrap();
    let (first, relevancy) = cats.iter().next().unwrap();
    assert_eq!(first, "Delivery", "{answer}");
    let values: Vec<i64> = cats.values().map(|v| v.as_i64().unwrap()).collect();
    assert!(
        values.windows(2).all(|w| w[0] >= w[1]),
        "best first: {values:?}"
    );
    assert!(
        values.iter().all(|v| (5..=100).contains(v)),
        "above the threshold: {values:?}"
    );
    assert!(relevancy.as_i64().unwrap() > 50);
    assert_eq!(answer["Result"]["CategoryIds"]["Delivery"], "CAT-2");

    let (status, answer) = s
        .esp(
            "classification",
            "Classification",
            "Classify",
            json!(101),
            json!({"Text": "x", "RootCategory": "Sales"}),
        )
        .await;
    assert_fault(status, &answer, 422, 3005);
    let (status, answer) = s
        .esp(
            "classification",
            "Classification",
            "Classify",
            json!(101),
            json!({"Subject": "x"}),
        )
        .await;
    assert_fault(status, &answer, 422, 3005);
    assert!(answer["FaultString"].as_str().unwrap().contains("'Text'"));
}

#[tokio::test]
async fn screen_finds_the_tenants_rules_with_positions() {
    let s = serve(CLUSTER).await;
    let text = "This is stupid. My lawyer will call; card 4111 1111 1111 1111.";
    let (status, answer) = s
        .esp(
            "classification",
            "Classification",
            "Screen",
            json!(101),
            json!({"Text": text}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let r = &answer["Result"];
    assert_eq!(r["Matched"], 3, "{r}");
    assert_eq!(r["Rules"]["Rude word"]["RuleId"], "SR-2");
    assert_eq!(r["Rules"]["Rude word"]["Match"]["Start"], 8);
    assert_eq!(r["Rules"]["Legal threat"]["Match"]["Text"], "My lawyer");
    assert_eq!(
        r["Rules"]["Card number"]["Match"]["Text"],
        "4111 1111 1111 1111"
    );
    // Tenant 102 has no rules.
    let (_, answer) = s
        .esp(
            "classification",
            "Classification",
            "Screen",
            json!(102),
            json!({"Text": text}),
        )
        .await;
    assert_eq!(answer["Result"]["Matched"], 0);
}

#[tokio::test]
async fn train_changes_the_tenants_model_only() {
    let s = serve(CLUSTER).await;
    let text = "quokka zeppelin marmalade";
    let best = |answer: &serde_json::Value| {
        answer["Result"]["Categories"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .cloned()
    };
    for _ in 0..3 {
        let (status, answer) = s
            .esp(
                "classification",
                "Classification",
                "Train",
                json!(101),
                json!({"Category": "Zoo", "Text": text}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let (_, answer) = s
        .esp(
            "classification",
            "Classification",
            "Classify",
            json!(101),
            json!({"Text": text}),
        )
        .await;
    assert_eq!(best(&answer).as_deref(), Some("Zoo"), "{answer}");
    let (_, answer) = s
        .esp(
            "classification",
            "Classification",
            "Classify",
            json!(102),
            json!({"Text": text}),
        )
        .await;
    assert_ne!(
        best(&answer).as_deref(),
        Some("Zoo"),
        "tenant 102's model is untouched: {answer}"
    );
}
