//! Interaction Server nodes over real WebSockets: sessions, the node
//! router, ownership, auth, and ESP over a session — with node-sim as the
//! nodes.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use wasp::kv::{Kv, Value as KvValue};
use wasp::node::frames::OpKind;
use wasp::node::{OpDone, Operation};
use wasp::tools::node_sim::{Sim, SimArgs};

fn sim(s: &Served, node_id: &str, tenants: &[u32]) -> SimArgs {
    SimArgs {
        duration: 1,
        ..SimArgs::node(s.addr, node_id, tenants)
    }
}

async fn start(args: SimArgs) -> Sim {
    let sim = Sim::spawn(args);
    sim.connected(Duration::from_secs(5))
        .await
        .expect("node-sim welcomed");
    sim
}

fn submit(tenant: u32, external: Option<&str>) -> Operation {
    Operation {
        kind: OpKind::Submit,
        capture_point: "orders".into(),
        tenant,
        media_type: "workitem".into(),
        queue: Some("Inbound".into()),
        external_id: external.map(str::to_string),
        interaction_id: None,
        node_hint: None,
        correlation_id: None,
        properties: Kv::new().with("Subject", KvValue::Str("parcel".into())),
    }
}

fn follow(kind: OpKind, id: &str, properties: Kv) -> Operation {
    Operation {
        kind,
        capture_point: "orders".into(),
        tenant: 101,
        media_type: "workitem".into(),
        queue: None,
        external_id: None,
        interaction_id: Some(id.into()),
        node_hint: None,
        correlation_id: None,
        properties,
    }
}

/// Waits until `ready()` holds (checked every 10 ms, at most 10 s).
async fn until(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..1000 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// Operations a node has unanswered now.
fn outstanding(s: &Served, node: &str) -> usize {
    s.host
        .nodes
        .snapshot()
        .iter()
        .find(|n| n.node_id == node)
        .map_or(0, |n| n.operations_outstanding)
}

const NODES: &str =
    "[nodes]\nwait-for-node-ms = 300\nping-interval-ms = 200\nop-timeout-ms = 5000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactions_reach_only_the_node_serving_their_tenant() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let a = start(sim(&s, "is-a", &[101])).await;
    let b = start(sim(&s, "is-b", &[102])).await;
    for _ in 0..5 {
        assert_eq!(
            s.host
                .nodes
                .operate(submit(101, None))
                .await
                .unwrap()
                .node_id,
            "is-a"
        );
        assert_eq!(
            s.host
                .nodes
                .operate(submit(102, None))
                .await
                .unwrap()
                .node_id,
            "is-b"
        );
    }
    assert_eq!(a.state.interactions.lock().unwrap().len(), 5);
    assert!(
        a.state
            .interactions
            .lock()
            .unwrap()
            .values()
            .all(|i| i.tenant == 101)
    );
    assert_eq!(b.state.interactions.lock().unwrap().len(), 5);
    assert!(
        b.state
            .interactions
            .lock()
            .unwrap()
            .values()
            .all(|i| i.tenant == 102)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_serving_one_tenant_take_turns() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let a = start(sim(&s, "is-a", &[101])).await;
    let b = start(sim(&s, "is-b", &[101, 102])).await;
    for _ in 0..10 {
        s.host.nodes.operate(submit(101, None)).await.unwrap();
    }
    assert_eq!(a.state.interactions.lock().unwrap().len(), 5);
    assert_eq!(b.state.interactions.lock().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_follow_the_owner_and_stop_forgets() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let _a = start(sim(&s, "is-a", &[101])).await;
    let b = start(sim(&s, "is-b", &[101])).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let ext = format!("ord-{n}");
        ids.push(s.host.nodes.operate(submit(101, Some(&ext))).await.unwrap());
    }
    let on_b = ids.iter().find(|d| d.node_id == "is-b").unwrap().clone();
    // Update, Hold, GetInfo, by id and by ExternalId, all on the owner.
    let upd = Kv::new().with("Priority", KvValue::Int(5));
    let done = s
        .host
        .nodes
        .operate(follow(OpKind::Update, &on_b.interaction_id, upd))
        .await
        .unwrap();
    assert_eq!(done.node_id, "is-b");
    s.host
        .nodes
        .operate(follow(OpKind::Hold, &on_b.interaction_id, Kv::new()))
        .await
        .unwrap();
    let mut info = follow(OpKind::GetInfo, "", Kv::new());
    info.interaction_id = None;
    info.external_id = ids
        .iter()
        .position(|d| d.interaction_id == on_b.interaction_id)
        .map(|n| format!("ord-{n}"));
    let got: OpDone = s.host.nodes.operate(info).await.unwrap();
    assert_eq!(got.interaction_id, on_b.interaction_id);
    assert_eq!(got.properties.get("Priority"), Some(&KvValue::Int(5)));
    assert_eq!(
        got.properties.get("State"),
        Some(&KvValue::Str("held".into()))
    );
    assert!(b.state.interactions.lock().unwrap()[&on_b.interaction_id].held);
    // A second Submit with the same ExternalId is refused.
    let err = s
        .host
        .nodes
        .operate(submit(101, Some("ord-0")))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_u16(), 2004);
    // Stop removes it on the node and from the ownership map.
    let before = s.host.nodes.interactions();
    s.host
        .nodes
        .operate(follow(OpKind::Stop, &on_b.interaction_id, Kv::new()))
        .await
        .unwrap();
    assert_eq!(s.host.nodes.interactions(), before - 1);
    let err = s
        .host
        .nodes
        .operate(follow(OpKind::GetInfo, &on_b.interaction_id, Kv::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_u16(), 2003);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_its_pending_operations_and_the_survivor_takes_new_ones() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let mut slow = sim(&s, "is-a", &[101]);
    slow.answer_delay_ms = 1_500;
    let a = start(slow).await;
    let owned = s.host.nodes.operate(submit(101, None)).await.unwrap();
    assert_eq!(owned.node_id, "is-a");
    let mut pending = Vec::new();
    for _ in 0..3 {
        let host = s.host.clone();
        pending.push(tokio::spawn(async move {
            host.nodes.operate(submit(101, None)).await
        }));
    }
    until("three operations sent to is-a", || {
        outstanding(&s, "is-a") == 3
    })
    .await;
    a.kill();
    for p in pending {
        let err = p.await.unwrap().unwrap_err();
        assert_eq!(err.code.as_u16(), 2002, "{err}");
    }
    // Its interaction is not accessible while it is away.
    let err = s
        .host
        .nodes
        .operate(follow(OpKind::GetInfo, &owned.interaction_id, Kv::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_u16(), 2003);
    // New interactions go to the survivor.
    let b = start(sim(&s, "is-b", &[101])).await;
    for _ in 0..3 {
        assert_eq!(
            s.host
                .nodes
                .operate(submit(101, None))
                .await
                .unwrap()
                .node_id,
            "is-b"
        );
    }
    assert_eq!(b.state.interactions.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_the_same_node_id_takes_over_in_flight_operations() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    // The old session: says Hello, then never answers (a half-dead node).
    let hello = json!({"Type":"Hello","NodeId":"is-a","Tenants":[101],"MediaTypes":["workitem"],"Window":10});
    let (mut old, welcome) = ws::hello(s.addr, None, hello).await;
    assert_eq!(welcome["Type"], "Welcome");
    let mut pending = Vec::new();
    for n in 0..3 {
        let host = s.host.clone();
        pending.push(tokio::spawn(async move {
            host.nodes
                .operate(submit(101, Some(&format!("x-{n}"))))
                .await
        }));
    }
    // The old session sees the three Submits.
    let mut seen = 0;
    while seen < 3 {
        let frame = ws::recv(&mut old).await.expect("a frame");
        if frame["Type"] == "Submit" {
            seen += 1;
        }
    }
    // The node comes back on a new connection: the Submits are re-sent there.
    let again = start(sim(&s, "is-a", &[101])).await;
    for p in pending {
        let done = p.await.unwrap().expect("answered by the new session");
        assert_eq!(done.node_id, "is-a");
    }
    assert_eq!(again.state.interactions.lock().unwrap().len(), 3);
    // The old socket was closed by the host.
    loop {
        match ws::recv(&mut old).await {
            None => break,
            Some(frame) => assert_ne!(
                frame["Type"], "Submit",
                "nothing new goes to the old session"
            ),
        }
    }
    assert_eq!(s.host.nodes.snapshot().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_node_for_a_tenant_waits_then_fails_with_2001() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let err = s.host.nodes.operate(submit(101, None)).await.unwrap_err();
    assert_eq!(err.code.as_u16(), 2001);
    assert!(err.message.contains("waited 300 ms"), "{err}");
    // A node that connects while the interaction waits gets it.
    let host = s.host.clone();
    let waiting = tokio::spawn(async move { host.nodes.operate(submit(101, None)).await });
    until("the submit waits for a node", || {
        s.host.nodes.waiting() == 1
    })
    .await;
    let _a = start(sim(&s, "is-a", &[101])).await;
    assert_eq!(waiting.await.unwrap().unwrap().node_id, "is-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_the_capture_point_and_stopped_interactions_are_forgotten() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let mut notes = s.host.nodes.subscribe("orders");
    let mut args = sim(&s, "is-a", &[101]);
    args.stop_after_ms = Some(100);
    let _a = start(args).await;
    let done = s.host.nodes.operate(submit(101, None)).await.unwrap();
    assert_eq!(s.host.nodes.interactions(), 1);
    let note = tokio::time::timeout(Duration::from_secs(5), notes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note.notification, "stopped");
    assert_eq!(note.interaction_id, done.interaction_id);
    assert_eq!(note.capture_point, "orders");
    assert_eq!(
        s.host.nodes.interactions(),
        0,
        "a stopped interaction is forgotten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hellos_are_refused_with_a_reason() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let cases = [
        (json!({"Type":"Ping"}), 3000),
        (
            json!({"Type":"Hello","NodeId":"x","Tenants":[101],"MediaTypes":["email"]}),
            3000,
        ),
        (
            json!({"Type":"Hello","NodeId":"","Tenants":[101],"MediaTypes":["email"],"Window":5}),
            3000,
        ),
        (
            json!({"Type":"Hello","NodeId":"x","Tenants":[],"MediaTypes":["email"],"Window":5}),
            3000,
        ),
        (
            json!({"Type":"Hello","NodeId":"x","Tenants":[101],"MediaTypes":["email"],"Window":0}),
            3000,
        ),
        (
            json!({"Type":"Hello","NodeId":"x","Tenants":[109],"MediaTypes":["email"],"Window":5}),
            3001,
        ),
    ];
    for (hello, code) in cases {
        let (mut sock, answer) = ws::hello(s.addr, None, hello.clone()).await;
        assert_eq!(answer["Type"], "Refused", "{hello} → {answer}");
        assert_eq!(answer["Code"], code, "{hello} → {answer}");
        assert!(
            answer["Description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        assert!(ws::recv(&mut sock).await.is_none(), "closed after Refused");
    }
    let mut sock = ws::connect(s.addr, None).await.unwrap();
    ws::send_text(&mut sock, "not json").await;
    let answer = ws::recv(&mut sock).await.unwrap();
    assert_eq!(answer["Type"], "Refused");
    assert_eq!(answer["Code"], 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_considered_gone_after_three_ping_intervals() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let hello = json!({"Type":"Hello","NodeId":"mute","Tenants":[101],"MediaTypes":["workitem"],"Window":5});
    let (_sock, answer) = ws::hello(s.addr, None, hello).await;
    assert_eq!(answer["Type"], "Welcome");
    assert_eq!(answer["ProtocolVersion"], 1);
    assert_eq!(s.host.nodes.snapshot().len(), 1);
    // Never read, never answer pings: gone after 3 × 200 ms.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !s.host.nodes.snapshot().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the silent node is still registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esp_over_a_session_many_in_flight_answered_out_of_order() {
    let s = serve(&format!(
        "{NODES}{}",
        chaos_cluster("chaos", "instances = 4\nwindow = 64\nqueue = 1024")
    ))
    .await;
    let hello = json!({"Type":"Hello","NodeId":"is-1","Tenants":[101],"MediaTypes":["workitem"],"Window":300});
    let (mut sock, answer) = ws::hello(s.addr, None, hello).await;
    assert_eq!(answer["Type"], "Welcome");
    let n = 200;
    for i in 0..n {
        let millis = (i * 7) % 23;
        ws::send(
            &mut sock,
            json!({"Type":"Request3rdServer","Cluster":"chaos","ReferenceId":i,
                "Request":{"Service":"Chaos","Method":"Echo","TenantId":101,"Parameters":{"I":i,"Pad":"x".repeat(millis)}},
                "UserData":{"Echo":i}}),
        )
        .await;
    }
    // Spin makes some answers slow so order changes.
    for i in 0..20 {
        ws::send(
            &mut sock,
            json!({"Type":"Request3rdServer","Cluster":"chaos","ReferenceId":1000 + i,
                "Request":{"Service":"Chaos","Method":"Spin","TenantId":101,"Parameters":{"Millis":(20 - i) * 3}}}),
        )
        .await;
    }
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    while seen.len() < n + 20 {
        let frame = ws::recv(&mut sock).await.expect("an answer");
        assert_eq!(frame["Event"], "Event3rdServerResponse", "{frame}");
        let r = frame["ReferenceId"].as_i64().unwrap();
        assert!(seen.insert(r), "ReferenceId {r} answered twice");
        if r < 1000 {
            assert_eq!(frame["Result"]["I"], r, "the answer matches its request");
            assert_eq!(frame["UserData"]["Echo"], r);
        } else {
            order.push(r);
        }
    }
    assert_ne!(
        order,
        (1000..1020).collect::<Vec<_>>(),
        "slow answers came back out of order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_window_and_duplicate_reference_ids_are_enforced() {
    let s = serve(&format!(
        "{NODES}{}",
        chaos_cluster("chaos", "instances = 2")
    ))
    .await;
    let hello = json!({"Type":"Hello","NodeId":"is-1","Tenants":[101],"MediaTypes":["workitem"],"Window":2});
    let (mut sock, _) = ws::hello(s.addr, None, hello).await;
    let spin = |r: i64| {
        json!({"Type":"Request3rdServer","Cluster":"chaos","ReferenceId":r,
            "Request":{"Service":"Chaos","Method":"Spin","TenantId":101,"Parameters":{"Millis":400}}})
    };
    ws::send(&mut sock, spin(1)).await;
    ws::send(&mut sock, spin(1)).await; // duplicate while outstanding
    ws::send(&mut sock, spin(2)).await;
    ws::send(&mut sock, spin(3)).await; // beyond the window of 2
    let mut faults = Vec::new();
    let mut ok = Vec::new();
    for _ in 0..4 {
        let f = ws::recv(&mut sock).await.unwrap();
        if f["Event"] == "Event3rdServerFault" {
            faults.push((
                f["ReferenceId"].as_i64().unwrap(),
                f["FaultCode"].as_u64().unwrap(),
            ));
        } else {
            ok.push(f["ReferenceId"].as_i64().unwrap());
        }
    }
    faults.sort();
    ok.sort();
    assert_eq!(faults, [(1, 2004), (3, 3003)]);
    assert_eq!(ok, [1, 2]);
    // A request without Cluster, and one for a tenant the node did not announce.
    ws::send(&mut sock, json!({"Type":"Request3rdServer","ReferenceId":9,"Request":{"Service":"Chaos","Method":"Echo","TenantId":101}})).await;
    let f = ws::recv(&mut sock).await.unwrap();
    assert_eq!(
        (f["ReferenceId"].clone(), f["FaultCode"].clone()),
        (json!(9), json!(3000))
    );
    ws::send(&mut sock, json!({"Type":"Request3rdServer","Cluster":"chaos","ReferenceId":10,"Request":{"Service":"Chaos","Method":"Echo","TenantId":102}})).await;
    let f = ws::recv(&mut sock).await.unwrap();
    assert_eq!(
        (f["ReferenceId"].clone(), f["FaultCode"].clone()),
        (json!(10), json!(3004))
    );
    // Unreadable frames get an Error and the session goes on.
    ws::send_text(&mut sock, "{\"Type\":\"Bogus\"}").await;
    let f = ws::recv(&mut sock).await.unwrap();
    assert_eq!(
        (f["Type"].clone(), f["Code"].clone()),
        (json!("Error"), json!(3000))
    );
    ws::send(&mut sock, json!({"Type":"Ping"})).await;
    assert_eq!(ws::recv(&mut sock).await.unwrap()["Type"], "Pong");
}

const TOKENS: &str = r#"
[[tokens]]
token = "node-token-for-101-only"
role = "node"
tenants = [101]

[[tokens]]
token = "admin-token-0123456789"
role = "admin"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_limit_who_may_do_what_and_for_which_tenant() {
    let s = serve(&format!("{NODES}{TOKENS}{FAX_AND_IM}")).await;
    let hello = |t: u32| json!({"Type":"Hello","NodeId":"is-1","Tenants":[t],"MediaTypes":["workitem"],"Window":5});
    // No token: the upgrade itself is refused.
    let err = ws::connect(s.addr, None).await.unwrap_err();
    assert!(err.contains("401"), "{err}");
    // A node token for 101 announcing 102.
    let (_sock, answer) = ws::hello(s.addr, Some("node-token-for-101-only"), hello(102)).await;
    assert_eq!(
        (answer["Type"].clone(), answer["Code"].clone()),
        (json!("Refused"), json!(3004))
    );
    // ... and announcing 101 is welcome.
    let (_sock, answer) = ws::hello(s.addr, Some("node-token-for-101-only"), hello(101)).await;
    assert_eq!(answer["Type"], "Welcome");
    // The token may come as `?token=` (a WebSocket client that cannot set
    // headers); a wrong one is refused like a wrong bearer token.
    let url = |token: &str| format!("ws://{}/v1/nodes/connect?token={token}", s.addr);
    let (mut by_query, _) = tokio_tungstenite::connect_async(url("node-token-for-101-only"))
        .await
        .expect("a session with ?token=");
    let mut by_query_hello = hello(101);
    by_query_hello["NodeId"] = json!("is-2");
    ws::send(&mut by_query, by_query_hello).await;
    assert_eq!(ws::recv(&mut by_query).await.unwrap()["Type"], "Welcome");
    let err = tokio_tungstenite::connect_async(url("not-a-known-token-at-all"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    // ESP over HTTP: no token 401, the node token for the wrong tenant 403.
    let body = json!({"Request":{"Service":"IM","Method":"SendMessage","TenantId":102,"Parameters":{"To":"a","Text":"b"}}});
    let resp = s
        .http
        .post(s.url("/v1/esp/im"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["FaultCode"], 3004);
    let resp = s
        .http
        .post(s.url("/v1/esp/im"))
        .bearer_auth("node-token-for-101-only")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap()["FaultCode"], 3004);
    let ok = json!({"Request":{"Service":"IM","Method":"SendMessage","TenantId":101,"Parameters":{"To":"a","Text":"b"}}});
    let resp = s
        .http
        .post(s.url("/v1/esp/im"))
        .bearer_auth("node-token-for-101-only")
        .body(ok.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The scheme is case-insensitive (RFC 9110).
    for scheme in ["bearer", "BEARER"] {
        let resp = s
            .http
            .post(s.url("/v1/esp/im"))
            .header("authorization", format!("{scheme} node-token-for-101-only"))
            .body(ok.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
    }

    // Admin calls need the admin token.
    let resp = s.http.get(s.url("/v1/admin/nodes")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = s
        .http
        .get(s.url("/v1/admin/nodes"))
        .bearer_auth("node-token-for-101-only")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let nodes: Value = s
        .http
        .get(s.url("/v1/admin/nodes"))
        .bearer_auth("admin-token-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(nodes[0]["node_id"], "is-1");
    assert_eq!(nodes[0]["tenants"], json!([101]));
    // Health stays open.
    assert_eq!(
        s.http.get(s.url("/healthz")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sim_drives_esp_load_over_its_session() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let mut args = sim(&s, "load-1", &[101]);
    args.load_cluster = Some("fax".into());
    args.load_service = "Fax".into();
    args.load_method = "SendFax".into();
    args.load_params = r#"{"To":"+14155550100","Document":"x"}"#.into();
    args.concurrency = 8;
    let report = Sim::spawn(args)
        .finished()
        .await
        .unwrap()
        .expect("a report");
    assert!(report.ok > 100, "{report}");
    assert!(report.faults.is_empty(), "{report}");
    assert_eq!(report.ok, report.sent, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sim_fails_over_to_another_host() {
    let first = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let second = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let mut args = sim(&first, "is-n", &[101]);
    args.connect = vec![
        format!("ws://{}", first.addr),
        format!("ws://{}", second.addr),
    ];
    let node = start(args).await;
    let on = node.state.sessions.lock().unwrap()[0].clone();
    let (gone, other) = if on.contains(&first.addr.to_string()) {
        (first, second)
    } else {
        (second, first)
    };
    drop(gone); // that host goes away
    let deadline = Instant::now() + Duration::from_secs(10);
    while other.host.nodes.snapshot().is_empty() {
        assert!(Instant::now() < deadline, "node-sim did not fail over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        other
            .host
            .nodes
            .operate(submit(101, None))
            .await
            .unwrap()
            .node_id,
        "is-n"
    );
}

/// A raw node that answers every Submit with the same InteractionId.
async fn claiming_node(
    addr: std::net::SocketAddr,
    node_id: &str,
    interaction_id: &'static str,
) -> tokio::task::JoinHandle<()> {
    let hello = json!({"Type":"Hello","NodeId":node_id,"Tenants":[101],"MediaTypes":["workitem"],"Window":10});
    let (mut sock, welcome) = ws::hello(addr, None, hello).await;
    assert_eq!(welcome["Type"], "Welcome");
    tokio::spawn(async move {
        while let Some(frame) = ws::recv(&mut sock).await {
            if frame["Type"] == "Submit" {
                let done = json!({"Type":"Done","CorrelationId":frame["CorrelationId"],"InteractionId":interaction_id});
                ws::send(&mut sock, done).await;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_claiming_one_interaction_id_is_2005() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let _a = claiming_node(s.addr, "is-a", "0001AB").await;
    let _b = claiming_node(s.addr, "is-b", "0001AB").await;
    let first = s.host.nodes.operate(submit(101, None)).await.unwrap();
    let second = s.host.nodes.operate(submit(101, None)).await.unwrap_err();
    assert_eq!(second.code.as_u16(), 2005, "{second}");
    assert!(second.message.contains(&first.node_id), "{second}");
    assert_eq!(s.host.nodes.interactions(), 1, "the first owner keeps it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ownership_map_and_the_wait_for_a_node_are_bounded() {
    let s = serve(&format!(
        "[nodes]\nmax-interactions = 3\nwaiting = 1\nwait-for-node-ms = 2000\n{FAX_AND_IM}"
    ))
    .await;
    // One interaction may wait for a node; a second is refused at once.
    let host = s.host.clone();
    let waiting = tokio::spawn(async move { host.nodes.operate(submit(101, None)).await });
    until("the submit waits for a node", || {
        s.host.nodes.waiting() == 1
    })
    .await;
    let refused = s.host.nodes.operate(submit(101, None)).await.unwrap_err();
    assert_eq!(refused.code.as_u16(), 3003, "{refused}");
    assert!(
        !waiting.is_finished(),
        "refused while the first still waits"
    );
    let _a = start(sim(&s, "is-a", &[101])).await;
    waiting.await.unwrap().unwrap();
    // Three interactions are remembered; the fourth Submit is refused
    // until one stops.
    let two = s.host.nodes.operate(submit(101, None)).await.unwrap();
    s.host.nodes.operate(submit(101, None)).await.unwrap();
    let full = s.host.nodes.operate(submit(101, None)).await.unwrap_err();
    assert_eq!(full.code.as_u16(), 3003, "{full}");
    s.host
        .nodes
        .operate(follow(OpKind::Stop, &two.interaction_id, Kv::new()))
        .await
        .unwrap();
    s.host.nodes.operate(submit(101, None)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_waiting_for_a_full_node_window_are_bounded() {
    let s = serve(&format!("[nodes]\nwaiting = 1\n{FAX_AND_IM}")).await;
    let mut args = sim(&s, "is-a", &[101]);
    args.window = 1;
    args.answer_delay_ms = 600;
    let _a = start(args).await;
    // The first operation fills the node's window of 1, the second waits
    // for its place, the third is refused at once.
    let host = s.host.clone();
    let first = tokio::spawn(async move { host.nodes.operate(submit(101, None)).await });
    until("the first fills the window", || {
        outstanding(&s, "is-a") == 1
    })
    .await;
    let host = s.host.clone();
    let second = tokio::spawn(async move { host.nodes.operate(submit(101, None)).await });
    until("the second waits for a place", || {
        s.host.nodes.waiting() == 1
    })
    .await;
    let refused = s.host.nodes.operate(submit(101, None)).await.unwrap_err();
    assert_eq!(refused.code.as_u16(), 3003, "{refused}");
    assert!(refused.message.contains("window of 1"), "{refused}");
    assert!(
        !second.is_finished(),
        "refused while the second still waits"
    );
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    // With the window free again, operations go through.
    s.host.nodes.operate(submit(101, None)).await.unwrap();
}

#[tokio::test]
async fn a_session_without_hello_in_time_is_refused() {
    let s = serve(&format!("[nodes]\nhello-timeout-ms = 200\n{FAX_AND_IM}")).await;
    let mut sock = ws::connect(s.addr, None).await.unwrap();
    let refused = ws::recv(&mut sock).await.expect("a Refused frame");
    assert_eq!(refused["Type"], "Refused", "{refused}");
    assert_eq!(refused["Code"], 3000, "{refused}");
    assert!(
        refused["Description"]
            .as_str()
            .unwrap()
            .contains("no Hello within 200 ms"),
        "{refused}"
    );
    assert!(ws::recv(&mut sock).await.is_none(), "then closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_error_code_outside_the_protocol_becomes_a_component_fault() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let hello = json!({"Type":"Hello","NodeId":"is-err","Tenants":[101],"MediaTypes":["workitem"],"Window":10});
    let (mut sock, welcome) = ws::hello(s.addr, None, hello).await;
    assert_eq!(welcome["Type"], "Welcome");
    let node = tokio::spawn(async move {
        while let Some(frame) = ws::recv(&mut sock).await {
            if frame["Type"] == "Submit" {
                let error = json!({"Type":"Error","CorrelationId":frame["CorrelationId"],
                    "Code":4711,"Description":"queue Inbound is closed"});
                ws::send(&mut sock, error).await;
            }
        }
    });
    let fault = s.host.nodes.operate(submit(101, None)).await.unwrap_err();
    assert_eq!(fault.code.as_u16(), 3005, "{fault:?}");
    assert_eq!(fault.component_code, Some(4711));
    assert_eq!(fault.message, "queue Inbound is closed");
    node.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_beyond_the_buffer_are_dropped_and_counted() {
    let s = serve(&format!("{NODES}{FAX_AND_IM}")).await;
    let mut notes = s.host.nodes.subscribe("orders");
    let _node = claiming_node(s.addr, "is-n", "0001AB").await;
    s.host.nodes.operate(submit(101, None)).await.unwrap();
    // A second raw session of the owner would replace it; notify through
    // a node that owns the interaction: reconnect as "is-n" and notify.
    let hello = json!({"Type":"Hello","NodeId":"is-n","Tenants":[101],"MediaTypes":["workitem"],"Window":10});
    let (mut sock, welcome) = ws::hello(s.addr, None, hello).await;
    assert_eq!(welcome["Type"], "Welcome");
    let extra = 5;
    for i in 0..wasp::node::NOTIFICATION_BUFFER + extra {
        let notify = json!({"Type":"Notify","InteractionId":"0001AB","Notification":"changed",
            "Properties":{"N":i}});
        ws::send(&mut sock, notify).await;
    }
    // A ping answered means every Notify before it was handled.
    ws::send(&mut sock, json!({"Type":"Ping"})).await;
    assert_eq!(ws::recv(&mut sock).await.unwrap()["Type"], "Pong");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(&format!("wasp_notifications_dropped_total {extra}")),
        "{metrics}"
    );
    let mut received = 0;
    while notes.try_recv().is_ok() {
        received += 1;
    }
    assert_eq!(received, wasp::node::NOTIFICATION_BUFFER);
}
