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

/// A classification cluster of `instances` with these config lines.
fn trainable(instances: usize, config: &str) -> String {
    format!(
        r#"
[clusters.classification]
service = "Classification"
component = "builtin:classification"
tenants = [101, 102]
instances = {instances}
[clusters.classification.config]
{config}
[clusters.classification.store]
"#
    )
}

async fn train(s: &Served, tenant: u64, category: &str, text: &str) -> (u16, serde_json::Value) {
    s.esp(
        "classification",
        "Classification",
        "Train",
        json!(tenant),
        json!({"Category": category, "Text": text}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_train_calls_on_several_instances_keep_every_example() {
    let s = serve(&trainable(4, "")).await;
    const N: i64 = 200;
    let calls = (0..N).map(|i| {
        let s = &s;
        async move { train(s, 101, "Zoo", &format!("example number {i}")).await }
    });
    let mut examples: Vec<i64> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|(status, answer)| {
            assert_eq!(status, 200, "{answer}");
            answer["Result"]["Examples"].as_i64().unwrap()
        })
        .collect();
    examples.sort();
    assert_eq!(
        examples,
        (1..=N).collect::<Vec<_>>(),
        "every Train got its own slot"
    );
    let store = s.host.current().clusters["classification"]
        .store()
        .unwrap()
        .clone();
    let mut texts: Vec<String> = store
        .keys(101, "train/0")
        .unwrap()
        .iter()
        .map(|k| String::from_utf8(store.get(101, k).unwrap().unwrap()).unwrap())
        .collect();
    texts.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("Zoo\texample number {i}")).collect();
    want.sort();
    assert_eq!(texts, want, "every example is stored");
}

#[tokio::test]
async fn train_stops_at_the_tenants_limit_with_a_fault_that_says_so() {
    let s = serve(&trainable(2, "max-examples = \"3\"")).await;
    for n in 1..=3 {
        let (status, answer) = train(&s, 101, "Zoo", "quokka").await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["Result"]["Examples"], n);
    }
    for _ in 0..2 {
        let (status, answer) = train(&s, 101, "Zoo", "quokka").await;
        assert_fault_says(
            status,
            &answer,
            422,
            3005,
            "tenant 101 has 3 training examples",
        );
        assert_eq!(answer["ComponentFaultCode"], 5, "LIMIT_REACHED: {answer}");
        assert!(
            answer["FaultString"]
                .as_str()
                .unwrap()
                .contains("max-examples"),
            "{answer}"
        );
    }
    // Another tenant has its own examples.
    let (status, answer) = train(&s, 102, "Zoo", "quokka").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Result"]["Examples"], 1);
}

#[tokio::test]
async fn one_example_is_bounded_in_bytes() {
    let s = serve(&trainable(1, "max-example-bytes = \"100\"")).await;
    let (status, answer) = train(&s, 101, "Zoo", &"quokka ".repeat(20)).await;
    assert_fault_says(
        status,
        &answer,
        422,
        3005,
        "more than the 100 one example may have",
    );
    assert_eq!(answer["ComponentFaultCode"], 2);
    let store = s.host.current().clusters["classification"]
        .store()
        .unwrap()
        .clone();
    assert_eq!(store.usage(None).unwrap().entries, 0, "nothing stored");
    let (status, answer) = train(&s, 101, "Zoo", &"quokka ".repeat(13)).await;
    assert_eq!(status, 200, "94 bytes fit: {answer}");
}

#[tokio::test]
async fn classify_reads_no_more_than_max_examples_of_the_tenants_examples() {
    let s = serve(&trainable(1, "max-examples = \"3\"")).await;
    // Whatever the store holds, the model reads slots 0..3 only.
    let store = s.host.current().clusters["classification"]
        .store()
        .unwrap()
        .clone();
    store.set(101, "train/count", b"40", None).unwrap();
    for i in 0..40 {
        let example = if i < 3 {
            "Billing\tinvoice".to_string()
        } else {
            "Zoo\tquokka zeppelin marmalade".to_string()
        };
        store
            .set(101, &format!("train/{i:08}"), example.as_bytes(), None)
            .unwrap();
    }
    let (status, answer) = s
        .esp(
            "classification",
            "Classification",
            "Classify",
            json!(101),
            json!({"Text": "quokka zeppelin marmalade"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["Result"]["Categories"].get("Zoo").is_none(),
        "examples past max-examples are not read: {answer}"
    );
}

#[tokio::test]
async fn examples_stored_before_slots_were_counted_are_kept() {
    let s = serve(&trainable(1, "")).await;
    let store = s.host.current().clusters["classification"]
        .store()
        .unwrap()
        .clone();
    for i in 0..3 {
        store
            .set(
                101,
                &format!("train/{i:08}"),
                b"Zoo\tquokka zeppelin marmalade",
                None,
            )
            .unwrap();
    }
    let (status, answer) = train(&s, 101, "Zoo", "quokka").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Result"]["Examples"], 4, "after the 3 older ones");
    assert_eq!(store.keys(101, "train/0").unwrap().len(), 4);
    let (_, answer) = s
        .esp(
            "classification",
            "Classification",
            "Classify",
            json!(101),
            json!({"Text": "zeppelin marmalade"}),
        )
        .await;
    let best = answer["Result"]["Categories"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .cloned();
    assert_eq!(best.as_deref(), Some("Zoo"), "{answer}");
}
