//! The http capture adapter over real sockets: JSON and Genesys native
//! SOAP calls to a gateway served on 127.0.0.1:0, with a real node-sim
//! connected over its WebSocket session; the SOAP dialect also from a
//! real SOAP client (Python zeep) that imports the served WSDL.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Served, TENANTS, assert_fault, assert_fault_says};
use serde_json::{Value, json};
use wasp::config::Config;
use wasp::kv::Value as KvValue;
use wasp::tools::node_sim::{Sim, SimArgs};

const PATIENCE: Duration = Duration::from_secs(20);

/// A gateway with the http capture point `orders-ws` (and the file capture
/// point `orders`, which the http routes do not serve), its data under a
/// fresh folder, and `extra` config lines.
async fn gateway(data: &Path, extra: &str) -> Served {
    let text = format!(
        r#"data-dir = "{}"
{TENANTS}
{extra}

[captures.orders-ws]
adapter = "http"
default-values = {{ TenantId = 101, Queue = "Inbound" }}
rules = [{{ property = "Customer.Segment", equals = "gold", tenant = 102 }}]

[captures.orders]
adapter = "file"
default-values = {{ TenantId = 101 }}
"#,
        data.display()
    );
    let mut config =
        Config::parse(&text, Path::new(".")).unwrap_or_else(|e| panic!("config: {e}\n{text}"));
    config.runtime.cache_dir = Some(common::cache_dir());
    common::serve_config(config).await
}

fn sim_args(s: &Served, tenants: &[u32], token: Option<&str>) -> SimArgs {
    SimArgs {
        connect: vec![format!("ws://{}", s.addr)],
        node_id: "is-1".into(),
        tenants: tenants.to_vec(),
        media: vec!["workitem".into()],
        window: 100,
        token: token.map(str::to_string),
        stop_after_ms: None,
        answer_delay_ms: 0,
        load_cluster: None,
        load_service: "Echo".into(),
        load_method: "Echo".into(),
        load_params: "{}".into(),
        rate: 0,
        concurrency: 1,
        duration: 1,
    }
}

async fn node(s: &Served, tenants: &[u32]) -> Sim {
    let sim = Sim::spawn(sim_args(s, tenants, None));
    sim.connected(PATIENCE).await.expect("node-sim welcomed");
    sim
}

/// `POST /v1/capture/orders-ws/{op}` with a JSON body: status and answer.
async fn call(s: &Served, op: &str, body: Value) -> (u16, Value) {
    call_as(s, "orders-ws", op, body, None).await
}

async fn call_as(s: &Served, cp: &str, op: &str, body: Value, token: Option<&str>) -> (u16, Value) {
    let mut request = s
        .http
        .post(s.url(&format!("/v1/capture/{cp}/{op}")))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {status} {text}"));
    (status, json)
}

/// POSTs a SOAP envelope: status, content type, body text.
async fn soap(s: &Served, cp: &str, envelope: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = s
        .http
        .post(s.url(&format!("/Genesys/Interaction/{cp}/WebServiceCapturePoint")))
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"\"")
        .body(envelope.to_string());
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, response.text().await.unwrap())
}

fn envelope(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ixn="http://www.genesyslab.com/interaction">
<SOAP-ENV:Body>{body}</SOAP-ENV:Body>
</SOAP-ENV:Envelope>"#
    )
}

/// The text of the first `<ixn:{name}>` element of a SOAP answer
/// (predefined entities resolved).
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<ixn:{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</ixn:{name}>"))?;
    let text = &xml[start..start + end];
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// Asserts a SOAP 1.1 fault answered with HTTP `http`, `faultcode`
/// `SOAP-ENV:{code}` and `ErrorCode` `error`, whose description says `text`.
#[track_caller]
fn assert_soap_fault(
    answer: &(u16, String, String),
    http: u16,
    code: &str,
    error: u16,
    text: &str,
) {
    let (status, ct, body) = answer;
    assert_eq!(*status, http, "{body}");
    assert!(ct.starts_with("text/xml"), "{ct}: {body}");
    assert!(body.contains("<SOAP-ENV:Fault>"), "{body}");
    assert!(
        body.contains(&format!("<faultcode>SOAP-ENV:{code}</faultcode>")),
        "{body}"
    );
    assert_eq!(
        element(body, "ErrorCode"),
        Some(error.to_string()),
        "{body}"
    );
    let said = element(body, "ErrorDescription").unwrap_or_default();
    assert!(
        said.contains(text),
        "{said:?} does not say {text:?}: {body}"
    );
}

async fn capture_stats(s: &Served, name: &str) -> Value {
    let all = s.get_json("/v1/admin/captures").await;
    all.as_array()
        .unwrap()
        .iter()
        .find(|c| c["Name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no capture point {name} in {all}"))
}

#[tokio::test]
async fn json_operations_reach_the_node_and_answer_with_its_result() {
    let data = tempfile::tempdir().unwrap();
    let s = gateway(data.path(), "").await;
    let sim = node(&s, &[101, 102]).await;

    let (status, submitted) = call(
        &s,
        "submit",
        json!({"ExternalId": "ord-88", "Queue": "Inbound",
               "Properties": {"Subject": "parcel", "Priority": 5, "Customer": {"Segment": "gold"}}}),
    )
    .await;
    assert_eq!(status, 200, "{submitted}");
    let id = submitted["InteractionId"]
        .as_str()
        .expect("an id")
        .to_string();
    {
        let held = sim.state.interactions.lock().unwrap();
        let i = held.get(&id).expect("the node holds the interaction");
        assert_eq!(i.external_id.as_deref(), Some("ord-88"));
        assert_eq!(i.tenant, 102, "the rule maps gold customers to 102");
        assert_eq!(i.capture_point, "orders-ws");
        assert_eq!(
            i.properties.get("Subject"),
            Some(&KvValue::Str("parcel".into()))
        );
    }

    // Follow-ups by ExternalId: the capture point remembers it.
    let (status, updated) = call(
        &s,
        "update",
        json!({"ExternalId": "ord-88", "Properties": {"Priority": 9}}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["InteractionId"], id.as_str());
    let (status, info) = call(&s, "getinfo", json!({"ExternalId": "ord-88"})).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["InteractionId"], id.as_str());
    assert_eq!(info["Properties"]["Subject"], "parcel", "{info}");
    assert_eq!(info["Properties"]["Priority"], 9, "{info}");
    assert_eq!(info["Properties"]["Customer"]["Segment"], "gold", "{info}");
    assert_eq!(info["Properties"]["TenantId"], 102, "{info}");

    let (status, held) = call(&s, "hold", json!({"InteractionId": id})).await;
    assert_eq!(status, 200, "{held}");
    assert!(sim.state.interactions.lock().unwrap()[&id].held);
    let (status, resumed) = call(&s, "resume", json!({"ExternalId": "ord-88"})).await;
    assert_eq!(status, 200, "{resumed}");
    assert!(!sim.state.interactions.lock().unwrap()[&id].held);

    // A second submit of the same ExternalId: 2004, no second interaction.
    let (status, again) = call(&s, "submit", json!({"ExternalId": "ord-88"})).await;
    assert_fault_says(status, &again, 409, 2004, &id);
    assert_eq!(sim.state.interactions.lock().unwrap().len(), 1);

    let (status, stopped) = call(&s, "stop", json!({"ExternalId": "ord-88"})).await;
    assert_eq!(status, 200, "{stopped}");
    assert!(sim.state.interactions.lock().unwrap().is_empty());

    // Every request was an item taken and processed.
    let stats = capture_stats(&s, "orders-ws").await;
    assert_eq!(stats["Adapter"], "http", "{stats}");
    assert_eq!(stats["Taken"], 7, "{stats}");
    assert_eq!(stats["Processed"], 7, "{stats}");
    assert_eq!(stats["Errors"], 0, "{stats}");
    assert_eq!(stats["OperationErrors"], 1, "{stats}");
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn json_requests_that_cannot_run_are_faults() {
    let data = tempfile::tempdir().unwrap();
    let s = gateway(data.path(), "").await;
    let sim = node(&s, &[101]).await;

    let (status, body) = call(&s, "stop", json!({"ExternalId": "never-sent"})).await;
    assert_fault_says(status, &body, 503, 2003, "never-sent");
    let (status, body) = call(&s, "hold", json!({})).await;
    assert_fault_says(status, &body, 400, 3000, "InteractionId or an ExternalId");
    let (status, body) = call(&s, "submit", json!({"TenantId": 999})).await;
    assert_fault(status, &body, 400, 3001);
    let (status, body) = call(&s, "submit", json!({"Properties": {"Rate": 1.5}})).await;
    assert_fault_says(status, &body, 400, 3000, "Properties.Rate");
    let (status, body) = call(&s, "submit", json!({"Teleport": true})).await;
    assert_fault_says(status, &body, 400, 3000, "Teleport");
    let (status, body) = call(&s, "teleport", json!({})).await;
    assert_fault_says(status, &body, 404, 3000, "teleport");
    // Unknown capture points, and one that is not an http one.
    let (status, body) = call_as(&s, "nowhere", "submit", json!({}), None).await;
    assert_fault_says(status, &body, 404, 2001, "nowhere");
    let (status, body) = call_as(&s, "orders", "submit", json!({}), None).await;
    assert_fault_says(status, &body, 404, 2001, "orders");
    // Without tokens, JSON must be declared JSON.
    let response = s
        .http
        .post(s.url("/v1/capture/orders-ws/submit"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_fault(status, &response.json().await.unwrap(), 415, 3000);

    assert!(sim.state.interactions.lock().unwrap().is_empty());
    let stats = capture_stats(&s, "orders-ws").await;
    assert_eq!(stats["Errors"], 2, "two bodies were unreadable: {stats}");
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_node_the_caller_gets_the_fault_after_the_wait() {
    let data = tempfile::tempdir().unwrap();
    let s = gateway(data.path(), "[nodes]\nwait-for-node-ms = 200\n").await;
    let (status, body) = call(&s, "submit", json!({"ExternalId": "lonely"})).await;
    assert_fault(status, &body, 503, 2001);
    let answer = soap(
        &s,
        "orders-ws",
        &envelope("<ixn:Submit><ixn:ExternalId>lonely-2</ixn:ExternalId></ixn:Submit>"),
        None,
    )
    .await;
    assert_soap_fault(&answer, 500, "Server", 2001, "");
    // Nothing was remembered: with a node, the same ExternalId goes through.
    let sim = node(&s, &[101]).await;
    let (status, body) = call(&s, "submit", json!({"ExternalId": "lonely"})).await;
    assert_eq!(status, 200, "{body}");
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn a_capture_token_is_required_when_tokens_are_configured() {
    let data = tempfile::tempdir().unwrap();
    let tokens = r#"
[[tokens]]
token = "capture-token-0123456789"
role = "capture"

[[tokens]]
token = "node-token-0123456789"
role = "node"
tenants = [101]

[[tokens]]
token = "admin-token-0123456789"
role = "admin"
"#;
    let s = gateway(data.path(), tokens).await;
    let sim = Sim::spawn(sim_args(&s, &[101], Some("node-token-0123456789")));
    sim.connected(PATIENCE).await.unwrap();

    let body = json!({"ExternalId": "t-1"});
    let (status, answer) = call_as(&s, "orders-ws", "submit", body.clone(), None).await;
    assert_fault(status, &answer, 401, 3004);
    let (status, answer) = call_as(
        &s,
        "orders-ws",
        "submit",
        body.clone(),
        Some("node-token-0123456789"),
    )
    .await;
    assert_fault(status, &answer, 403, 3004);
    // The token is checked before the capture point is looked up.
    let (status, answer) = call_as(&s, "nowhere", "submit", body.clone(), None).await;
    assert_fault(status, &answer, 401, 3004);
    let submit = envelope("<ixn:Submit><ixn:ExternalId>t-2</ixn:ExternalId></ixn:Submit>");
    let answer = soap(&s, "orders-ws", &submit, None).await;
    assert_soap_fault(&answer, 401, "Client", 3004, "token");
    let answer = soap(&s, "orders-ws", &submit, Some("node-token-0123456789")).await;
    assert_soap_fault(&answer, 403, "Client", 3004, "token");
    let wsdl = s
        .http
        .get(s.url("/Genesys/Interaction/orders-ws/WebServiceCapturePoint?wsdl"))
        .send()
        .await
        .unwrap();
    assert_eq!(wsdl.status().as_u16(), 401);
    assert!(sim.state.interactions.lock().unwrap().is_empty());

    // With the capture token (or the admin one) the calls go through; the
    // content type is then not checked.
    let (status, answer) = call_as(
        &s,
        "orders-ws",
        "submit",
        body.clone(),
        Some("capture-token-0123456789"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let answer = soap(&s, "orders-ws", &submit, Some("admin-token-0123456789")).await;
    assert_eq!(answer.0, 200, "{}", answer.2);
    assert_eq!(sim.state.interactions.lock().unwrap().len(), 2);
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_unread() {
    let data = tempfile::tempdir().unwrap();
    let s = gateway(data.path(), "[server]\nmax-body-bytes = 4096\n").await;
    let sim = node(&s, &[101]).await;
    let big = "x".repeat(8192);
    let (status, body) = call(&s, "submit", json!({"Properties": {"Note": big}})).await;
    assert_fault_says(status, &body, 400, 3000, "larger than 4096 bytes");
    let answer = soap(
        &s,
        "orders-ws",
        &envelope(&format!(
            "<ixn:Submit><ixn:UserData><ixn:kvitem><ixn:key>Note</ixn:key><ixn:value><ixn:ValueString>{big}</ixn:ValueString></ixn:value></ixn:kvitem></ixn:UserData></ixn:Submit>"
        )),
        None,
    )
    .await;
    assert_soap_fault(&answer, 500, "Client", 3000, "larger than 4096 bytes");
    assert!(sim.state.interactions.lock().unwrap().is_empty());
    let stats = capture_stats(&s, "orders-ws").await;
    assert_eq!(stats["Errors"], 2, "{stats}");
    assert_eq!(stats["Processed"], 0, "{stats}");
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn soap_calls_answer_in_genesys_native_mode() {
    let data = tempfile::tempdir().unwrap();
    let s = gateway(data.path(), "").await;
    let sim = node(&s, &[101, 102]).await;

    // The Genesys sample's shape: a default namespace, nested lists.
    let submit = r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ixn="http://www.genesyslab.com/interaction">
<SOAP-ENV:Header><Trace xmlns="urn:example">ignored</Trace></SOAP-ENV:Header>
<SOAP-ENV:Body>
<ixn:Submit xmlns="http://www.genesyslab.com/interaction">
<TenantId>Premium</TenantId>
<Queue>Queue1</Queue>
<ExternalId>Test00001</ExternalId>
<UserData>
<kvitem><key>StringKey</key><value><ValueString>a &amp; b &#x263A;</ValueString></value></kvitem>
<kvitem><key>IntKey</key><value><ValueInt>812</ValueInt></value></kvitem>
<kvitem><key>Blob</key><value><ValueBinary>AAEC/w==</ValueBinary></value></kvitem>
<kvitem><key>List1Key</key><value><ValueList>
  <kvitem><key>IntKeyL1</key><value><ValueInt>1812</ValueInt></value></kvitem>
</ValueList></value></kvitem>
</UserData>
</ixn:Submit>
</SOAP-ENV:Body>
</SOAP-ENV:Envelope>"#;
    let (status, ct, body) = soap(&s, "orders-ws", submit, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("text/xml"), "{ct}");
    assert!(
        body.contains(
            "<ixn:RequestResponse><ixn:Extension><ixn:kvitem><ixn:key>InteractionId</ixn:key>"
        ),
        "{body}"
    );
    let id = element(&body, "ValueString").expect("the InteractionId");
    {
        let held = sim.state.interactions.lock().unwrap();
        let i = held.get(&id).expect("the node holds it");
        assert_eq!(i.tenant, 102);
        assert_eq!(i.queue.as_deref(), Some("Queue1"));
        assert_eq!(i.external_id.as_deref(), Some("Test00001"));
        assert_eq!(
            i.properties.get("StringKey"),
            Some(&KvValue::Str("a & b \u{263A}".into()))
        );
        assert_eq!(i.properties.get("IntKey"), Some(&KvValue::Int(812)));
        assert_eq!(
            i.properties.get("Blob"),
            Some(&KvValue::Binary(vec![0, 1, 2, 255]))
        );
        let Some(KvValue::List(l1)) = i.properties.get("List1Key") else {
            panic!("{:?}", i.properties)
        };
        assert_eq!(l1.get("IntKeyL1"), Some(&KvValue::Int(1812)));
    }

    let hold = envelope("<ixn:Hold><ixn:ExternalId>Test00001</ixn:ExternalId></ixn:Hold>");
    let (status, _, body) = soap(&s, "orders-ws", &hold, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<ixn:RequestResponse/>"), "{body}");
    assert!(sim.state.interactions.lock().unwrap()[&id].held);

    let info = envelope(&format!(
        "<ixn:GetInfo><ixn:InteractionId>{id}</ixn:InteractionId></ixn:GetInfo>"
    ));
    let (status, _, body) = soap(&s, "orders-ws", &info, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<ixn:GetInfoResponse>"), "{body}");
    assert_eq!(element(&body, "InteractionId"), Some(id.clone()));
    assert_eq!(element(&body, "TenantId").as_deref(), Some("102"));
    assert!(
        body.contains("<ixn:key>State</ixn:key><ixn:value><ixn:ValueString>held</ixn:ValueString>"),
        "{body}"
    );
    assert!(
        body.contains("<ixn:ValueString>a &amp; b \u{263A}</ixn:ValueString>"),
        "{body}"
    );
    assert!(
        body.contains("<ixn:ValueBinary>AAEC/w==</ixn:ValueBinary>"),
        "{body}"
    );

    let ping = envelope("<ixn:Ping/>");
    let (status, _, body) = soap(&s, "orders-ws", &ping, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<ixn:key>Taken</ixn:key><ixn:value><ixn:ValueInt>3</ixn:ValueInt>"),
        "{body}"
    );
    assert!(
        body.contains("<ixn:key>Nodes</ixn:key><ixn:value><ixn:ValueInt>1</ixn:ValueInt>"),
        "{body}"
    );
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn bad_soap_requests_are_faults_and_run_nothing() {
    let data = tempfile::tempdir().unwrap();
    let s = gateway(data.path(), "").await;
    let sim = node(&s, &[101]).await;
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x "boom">]><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><Submit xmlns="http://www.genesyslab.com/interaction"><ExternalId>&x;</ExternalId></Submit></SOAP-ENV:Body></SOAP-ENV:Envelope>"#,
            "Client",
            "DTD",
        ),
        (
            &envelope("<ixn:Submit><ixn:ExternalId>&ext;</ixn:ExternalId></ixn:Submit>"),
            "Client",
            "entity &ext;",
        ),
        (
            &envelope("<ixn:Submit><ixn:ExternalId>x</ixn:Submit>"),
            "Client",
            "not well-formed",
        ),
        (
            r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><Ping xmlns="http://www.genesyslab.com/interaction"/></env:Body></env:Envelope>"#,
            "VersionMismatch",
            "SOAP 1.2",
        ),
        (
            r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Header><Auth xmlns="urn:x" SOAP-ENV:mustUnderstand="1"/></SOAP-ENV:Header><SOAP-ENV:Body><Ping xmlns="http://www.genesyslab.com/interaction"/></SOAP-ENV:Body></SOAP-ENV:Envelope>"#,
            "MustUnderstand",
            "Auth",
        ),
        (
            &envelope("<ixn:Teleport/>"),
            "Client",
            "unknown operation 'Teleport'",
        ),
        (&envelope("<Submit/>"), "Client", "namespace"),
        (
            &envelope("<ixn:Stop/>"),
            "Client",
            "InteractionId or an ExternalId",
        ),
        (
            &envelope(
                "<ixn:Submit><ixn:UserData><ixn:kvitem><ixn:key>N</ixn:key><ixn:value><ixn:ValueInt>many</ixn:ValueInt></ixn:value></ixn:kvitem></ixn:UserData></ixn:Submit>",
            ),
            "Client",
            "Submit/UserData/kvitem[1]/value/ValueInt: 'many' is not an integer",
        ),
        (
            &envelope("<ixn:Submit><ixn:Colour>red</ixn:Colour></ixn:Submit>"),
            "Client",
            "unknown element 'Colour'",
        ),
        (
            &envelope(&format!(
                "<ixn:Submit><ixn:UserData>{}x{}</ixn:UserData></ixn:Submit>",
                "<a>".repeat(200),
                "</a>".repeat(200)
            )),
            "Client",
            "nest deeper",
        ),
        ("", "Client", "no root element"),
    ];
    for (request, code, text) in cases {
        let answer = soap(&s, "orders-ws", request, None).await;
        assert_soap_fault(&answer, 500, code, 3000, text);
    }
    // A fault a node answers, carried in the FaultMessage.
    let answer = soap(
        &s,
        "orders-ws",
        &envelope("<ixn:GetInfo><ixn:ExternalId>nobody</ixn:ExternalId></ixn:GetInfo>"),
        None,
    )
    .await;
    assert_soap_fault(&answer, 500, "Client", 2003, "nobody");
    // Without tokens a SOAP body must be declared XML: 415.
    let response = s
        .http
        .post(s.url("/Genesys/Interaction/orders-ws/WebServiceCapturePoint"))
        .header("content-type", "text/plain")
        .body(envelope("<ixn:Ping/>"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer = (
        status,
        "text/xml".to_string(),
        response.text().await.unwrap(),
    );
    assert_soap_fault(&answer, 415, "Client", 3000, "text/xml");
    // Unknown capture points and file ones: 404.
    for cp in ["nowhere", "orders"] {
        let answer = soap(&s, cp, &envelope("<ixn:Ping/>"), None).await;
        assert_soap_fault(&answer, 404, "Server", 2001, cp);
    }
    assert!(sim.state.interactions.lock().unwrap().is_empty());
    let stats = capture_stats(&s, "orders-ws").await;
    assert_eq!(stats["Errors"], cases.len() as u64, "{stats}");
    sim.stop().await.unwrap();
}

/// The Python with zeep this test runs: a venv under
/// `target/toolchains/zeep`, created (pinned zeep from PyPI) on first use
/// and reused.
fn zeep_python() -> PathBuf {
    const ZEEP: &str = "4.3.1";
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .to_path_buf();
    let venv = target.join("toolchains").join("zeep");
    let python = venv.join("bin").join("python");
    let ready = || {
        std::process::Command::new(&python)
            .args([
                "-c",
                "import zeep,sys; sys.exit(zeep.__version__ != sys.argv[1])",
                ZEEP,
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready() {
        let run = |cmd: &mut std::process::Command| {
            let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
            assert!(status.success(), "{cmd:?}: {status}");
        };
        run(std::process::Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv));
        run(
            std::process::Command::new(venv.join("bin").join("pip")).args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                &format!("zeep=={ZEEP}"),
            ]),
        );
        assert!(ready(), "zeep {ZEEP} installed into {}", venv.display());
    }
    python
}

#[tokio::test]
async fn a_standard_soap_client_imports_the_wsdl_and_calls_every_operation() {
    let python = tokio::task::spawn_blocking(zeep_python).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let s = gateway(data.path(), "").await;
    let sim = node(&s, &[101]).await;
    // Addressed as localhost: the WSDL's endpoint follows the request's Host.
    let wsdl = format!(
        "http://localhost:{}/Genesys/Interaction/orders-ws/WebServiceCapturePoint?wsdl",
        s.addr.port()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/capture_http_client.py");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&wsdl)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let said = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in {stdout}"))
            .to_string()
    };
    assert_eq!(
        said("address "),
        format!(
            "http://localhost:{}/Genesys/Interaction/orders-ws/WebServiceCapturePoint",
            s.addr.port()
        )
    );
    let id = said("submit ");
    assert_eq!(
        said("getinfo "),
        format!("{id} 101 Inbound Subject=parcel Priority=5 Segment=silver")
    );
    assert_eq!(said("ping "), "orders-ws Taken=2 Nodes=1");
    assert_eq!(said("stop "), "ok");
    assert_eq!(said("fault "), "2003 Client");
    assert!(sim.state.interactions.lock().unwrap().is_empty(), "stopped");
    sim.stop().await.unwrap();
}
