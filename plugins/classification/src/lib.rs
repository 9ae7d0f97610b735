//! Bundled `Classification` service: a multinomial naive Bayes text
//! classifier (Classification Server's `Classify`), rule-based screening
//! (`Screen`) and per-tenant training (`Train`).
//!
//! The base model is trained from the `train` lines of
//! `examples/classification/messages.tsv` (embedded at build time); the
//! `test` lines are the held-out split the tests measure accuracy on. `Train` adds labelled
//! examples to the tenant's own model through the store, so every instance
//! of the cluster sees them.
//!
//! Config (`[clusters.<name>.config]`):
//! - `threshold`: lowest relevancy (1–100) reported, default 10.
//! - `category-ids`: `Name=Id` pairs, comma-separated (default `CAT-<NAME>`).
//! - `screening.<tenant id>`: one rule per line, `name|id|kind|value`, kind
//!   `word` (whole word, case-insensitive), `phrase` (case-insensitive
//!   substring) or `regex`.
//! - `max-examples`: examples `Train` keeps per tenant, default 1000 (at
//!   most 10 000); one more is a fault.
//! - `max-example-bytes`: `Category` plus `Text` of one example, in bytes,
//!   default 4096 (at most 65 536); a bigger one is a fault.
//!
//! Store layout, per tenant: `train/count` is the number of example slots
//! taken (an atomic counter), `train/NNNNNNNN` the example in slot N
//! (`Category` TAB `Text`). A model is the base plus at most
//! `max-examples` examples of at most `max-example-bytes`, so `Classify`
//! reads a bounded amount.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use wasp_sdk::{Fault, Kv, Request, Service, codes, config, store};

struct Classification;

const DATA: &str = include_str!("../../../examples/classification/messages.tsv");

/// The root every bundled category sits under.
const ROOT: &str = "Support";

impl Service for Classification {
    const SERVICE_TYPE: &'static str = "Classification";
    const VERSION: &'static str = "1.0";
    const METHODS: &'static [&'static str] = &["Classify", "Screen", "Train"];

    fn handle(req: Request) -> Result<Kv, Fault> {
        match req.method.as_str() {
            "Classify" => classify(&req),
            "Screen" => screen(&req),
            "Train" => train(&req),
            other => Err(Fault::unknown_method(other)),
        }
    }
}

/// Token counts per category.
#[derive(Default, Clone)]
struct Model {
    docs: BTreeMap<String, u32>,
    tokens: BTreeMap<String, HashMap<String, u32>>,
    totals: BTreeMap<String, u32>,
    vocabulary: HashMap<String, ()>,
}

impl Model {
    fn add(&mut self, category: &str, text: &str) {
        *self.docs.entry(category.to_string()).or_default() += 1;
        let counts = self.tokens.entry(category.to_string()).or_default();
        for token in tokens(text) {
            *counts.entry(token.clone()).or_default() += 1;
            *self.totals.entry(category.to_string()).or_default() += 1;
            self.vocabulary.insert(token, ());
        }
    }

    /// Posterior probability per category, best first.
    fn classify(&self, text: &str) -> Vec<(String, f64)> {
        let total_docs: u32 = self.docs.values().sum();
        let v = self.vocabulary.len().max(1) as f64;
        let words = tokens(text);
        let mut scores: Vec<(String, f64)> = self
            .docs
            .iter()
            .map(|(category, docs)| {
                let counts = &self.tokens[category];
                let total = f64::from(self.totals.get(category).copied().unwrap_or(0));
                let mut log_p = (f64::from(*docs) / f64::from(total_docs.max(1))).ln();
                for w in &words {
                    let n = f64::from(counts.get(w).copied().unwrap_or(0));
                    log_p += ((n + 1.0) / (total + v)).ln();
                }
                (category.clone(), log_p)
            })
            .collect();
        let max = scores
            .iter()
            .map(|(_, s)| *s)
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = scores.iter().map(|(_, s)| (s - max).exp()).sum();
        for (_, s) in &mut scores {
            *s = (*s - max).exp() / sum;
        }
        scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scores
    }
}

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "i", "my", "me", "is", "it", "to", "and", "of", "for", "on", "in", "at",
    "you", "your", "please", "hi", "hello", "thanks", "thank", "dear", "hey", "there", "team",
    "regards", "cheers", "this", "that", "was", "be",
];

fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()) && !w.chars().all(|c| c.is_ascii_digit()))
        .map(|w| stem(&w))
        .collect()
}

/// A light suffix stripper: "charged", "charges", "charging" → "charg".
fn stem(word: &str) -> String {
    for suffix in ["ing", "ed", "es", "s"] {
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.len() >= 3
        {
            return stem.to_string();
        }
    }
    word.to_string()
}

/// The base model: every line of the data set but each fifth.
fn base() -> &'static Model {
    static BASE: OnceLock<Model> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut model = Model::default();
        for line in DATA.lines() {
            let mut cols = line.splitn(3, '\t');
            if let (Some(category), Some("train"), Some(text)) =
                (cols.next(), cols.next(), cols.next())
            {
                model.add(category, text);
            }
        }
        model
    })
}

/// Where `Train` counts the tenant's example slots.
const COUNT: &str = "train/count";

/// The store key of example slot `index` (0-based).
fn example_key(index: i64) -> String {
    format!("train/{index:08}")
}

/// How much `Train` keeps per tenant.
struct TrainLimits {
    examples: i64,
    example_bytes: usize,
}

impl TrainLimits {
    fn from_config() -> Result<TrainLimits, Fault> {
        Ok(TrainLimits {
            examples: config::number("max-examples", 1000, 10_000)? as i64,
            example_bytes: config::number("max-example-bytes", 4096, 65_536)? as usize,
        })
    }
}

/// Slots the tenant's examples took so far.
fn example_count() -> Result<i64, Fault> {
    Ok(store::get_str(COUNT)?
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0))
}

/// The tenant's model: the base plus what `Train` stored for the tenant.
fn model_for_tenant(limits: &TrainLimits) -> Result<std::borrow::Cow<'static, Model>, Fault> {
    if !store::granted() {
        return Ok(std::borrow::Cow::Borrowed(base()));
    }
    let count = example_count()?.min(limits.examples);
    if count <= 0 {
        return Ok(std::borrow::Cow::Borrowed(base()));
    }
    let mut model = base().clone();
    for index in 0..count {
        // A slot whose write failed stays empty; an example bigger than
        // the limit (kept by an older version) is left out.
        if let Some(example) = store::get_str(&example_key(index))?
            && example.len() <= limits.example_bytes + 1
            && let Some((category, text)) = example.split_once('\t')
        {
            model.add(category, text);
        }
    }
    Ok(std::borrow::Cow::Owned(model))
}

/// Examples stored before the slots were counted (`train/NNNNNNNN` with
/// no `train/count`) keep their slots: the counter starts after them.
fn count_older_examples() -> Result<(), Fault> {
    if store::get(COUNT)?.is_some() {
        return Ok(());
    }
    let older = store::keys("train/")?.len();
    if older > 0 {
        // Whoever does this first wins; the others find the counter set.
        store::compare_and_swap(COUNT, None, older.to_string().as_bytes())?;
    }
    Ok(())
}

fn category_ids() -> HashMap<String, String> {
    config::get("category-ids")
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(n, id)| (n.trim().to_string(), id.trim().to_string()))
        .collect()
}

fn classify(req: &Request) -> Result<Kv, Fault> {
    let p = &req.parameters;
    let text = p.require_str("Text")?;
    let subject = p.optional_str("Subject")?.unwrap_or("");
    if let Some(root) = p.optional_str("RootCategory")?
        && root != ROOT
    {
        return Err(Fault::new(
            codes::NOT_FOUND,
            format!("no root category '{root}' (the model's root is '{ROOT}')"),
        ));
    }
    if let Some(lang) = p.optional_str("Language")?
        && !lang.eq_ignore_ascii_case("en")
        && !lang.eq_ignore_ascii_case("english")
    {
        return Err(Fault::invalid(
            "Language",
            format!("'{lang}' is not supported (only English)"),
        ));
    }
    let threshold: i64 = match config::get("threshold") {
        Some(t) => t.trim().parse().map_err(|_| {
            Fault::new(
                codes::INTERNAL,
                format!("config threshold '{t}' is not a number"),
            )
        })?,
        None => 10,
    };
    let model = model_for_tenant(&TrainLimits::from_config()?)?;
    let ids = category_ids();
    let mut categories = Kv::new();
    let mut category_ids = Kv::new();
    for (category, p) in model.classify(&format!("{subject} {text}")) {
        let relevancy = ((p * 100.0).round() as i64).clamp(1, 100);
        if relevancy < threshold {
            continue;
        }
        category_ids.push(
            category.clone(),
            ids.get(&category)
                .cloned()
                .unwrap_or_else(|| format!("CAT-{}", category.to_uppercase())),
        );
        categories.push(category, relevancy);
    }
    Ok(Kv::new()
        .with("Categories", categories)
        .with("CategoryIds", category_ids)
        .with("RootCategory", ROOT))
}

struct Rule {
    name: String,
    id: String,
    kind: String,
    value: String,
}

fn rules(tenant: u32) -> Result<Vec<Rule>, Fault> {
    let Some(text) = config::get(&format!("screening.{tenant}")) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let parts: Vec<&str> = line.splitn(4, '|').collect();
        let [name, id, kind, value] = parts[..] else {
            return Err(Fault::new(
                codes::INTERNAL,
                format!(
                    "screening rule {} for tenant {tenant} is not name|id|kind|value: {line}",
                    n + 1
                ),
            ));
        };
        out.push(Rule {
            name: name.trim().into(),
            id: id.trim().into(),
            kind: kind.trim().to_lowercase(),
            value: value.trim().into(),
        });
    }
    Ok(out)
}

fn screen(req: &Request) -> Result<Kv, Fault> {
    let text = req.parameters.require_str("Text")?;
    let lower = text.to_lowercase();
    let mut matched = Kv::new();
    let mut count = 0i64;
    for rule in rules(req.tenant.id)? {
        let positions: Vec<(usize, usize)> = match rule.kind.as_str() {
            "word" => {
                let word = rule.value.to_lowercase();
                let re = regex_lite::Regex::new(&format!(r"\b{}\b", regex_lite::escape(&word)))
                    .map_err(|e| Fault::new(codes::INTERNAL, e.to_string()))?;
                re.find_iter(&lower).map(|m| (m.start(), m.end())).collect()
            }
            "phrase" => {
                let phrase = rule.value.to_lowercase();
                lower
                    .match_indices(&phrase)
                    .map(|(i, m)| (i, i + m.len()))
                    .collect()
            }
            "regex" => {
                let re = regex_lite::Regex::new(&rule.value).map_err(|e| {
                    Fault::new(
                        codes::INTERNAL,
                        format!("screening rule '{}': bad regex: {e}", rule.name),
                    )
                })?;
                re.find_iter(text).map(|m| (m.start(), m.end())).collect()
            }
            other => {
                return Err(Fault::new(
                    codes::INTERNAL,
                    format!(
                        "screening rule '{}': unknown kind '{other}' (word, phrase, regex)",
                        rule.name
                    ),
                ));
            }
        };
        if positions.is_empty() {
            continue;
        }
        count += 1;
        let mut found = Kv::new().with("RuleId", rule.id.as_str());
        for (start, end) in positions {
            found.push(
                "Match",
                Kv::new()
                    .with("Start", start as i64)
                    .with("End", end as i64)
                    .with("Text", &text[start..end]),
            );
        }
        matched.push(rule.name, found);
    }
    Ok(Kv::new().with("Matched", count).with("Rules", matched))
}

fn train(req: &Request) -> Result<Kv, Fault> {
    let category = req.parameters.require_str("Category")?;
    let text = req.parameters.require_str("Text")?;
    if category.contains('\t') {
        return Err(Fault::invalid("Category", "must not contain tabs"));
    }
    if category.trim().is_empty() {
        return Err(Fault::invalid("Category", "is empty"));
    }
    let limits = TrainLimits::from_config()?;
    let size = category.len() + text.len();
    if size > limits.example_bytes {
        return Err(Fault::invalid(
            "Text",
            format!(
                "the example (Category and Text) is {size} bytes, more than the {} one example \
                 may have (config max-example-bytes)",
                limits.example_bytes
            ),
        ));
    }
    if !store::granted() {
        return Err(Fault::new(
            codes::INTERNAL,
            "Train needs the store: add [clusters.<name>.store] to the config",
        ));
    }
    count_older_examples()?;
    // The counter hands every Train its own slot, whichever instance runs it.
    let n = store::increment(COUNT, 1)?;
    if n > limits.examples {
        // Give the slot back: slots past the limit are never written.
        store::increment(COUNT, -1)?;
        return Err(Fault::new(
            codes::LIMIT_REACHED,
            format!(
                "tenant {} has {} training examples, the most it may have (config \
                 max-examples); this one was not added",
                req.tenant.id, limits.examples
            ),
        ));
    }
    store::set_str(
        &example_key(n - 1),
        &format!("{category}\t{}", text.replace('\t', " ")),
    )?;
    Ok(Kv::new().with("Trained", 1).with("Examples", n))
}

wasp_sdk::export!(Classification);
