//! ESP over HTTP against real clusters of real components (the bundled fax
//! and IM, and the misbehaving `chaos` fixture), over real sockets.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_fax_request_is_answered_and_its_job_can_be_looked_up() {
    // With a store, GetFaxStatus looks the job up there.
    let s = serve(&format!("{FAX_AND_IM}\n[clusters.fax.store]\n")).await;
    let body = json!({
        "ReferenceId": 77,
        "Request": {"Service": "Fax", "Method": "SendFax", "Version": "1.0", "TenantId": 101,
                    "Parameters": {"To": "+14155550100", "From": "+14155550199", "Document": {"$binary": "JVBERi0xLjQK"}}},
        "UserData": {"StrategyId": "s-7", "Nested": {"N": 1}}
    });
    let (status, _, answer) = s.post_raw("fax", body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Event"], "Event3rdServerResponse");
    assert_eq!(answer["ReferenceId"], 77);
    assert_eq!(
        answer["UserData"],
        json!({"StrategyId": "s-7", "Nested": {"N": 1}})
    );
    assert_eq!(answer["Result"]["Status"], "Queued");
    assert_eq!(answer["Result"]["Bytes"], 9);
    let job = answer["Result"]["FaxJobId"].as_str().unwrap().to_string();

    // Any instance answers GetFaxStatus for the job.
    for _ in 0..8 {
        let (status, answer) = s
            .esp(
                "fax",
                "Fax",
                "GetFaxStatus",
                json!("Environment"),
                json!({"FaxJobId": job}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["Result"]["FaxJobId"], job.as_str());
        assert_eq!(answer["Result"]["Status"], "Queued");
    }
    let record = s.host.current().clusters["fax"]
        .store()
        .unwrap()
        .get(101, &format!("fax/{job}"))
        .unwrap();
    assert_eq!(record.as_deref(), Some(&b"Queued"[..]), "the job's record");
    // A mistyped job id is the component's fault, with its own code.
    let (status, answer) = s
        .esp(
            "fax",
            "Fax",
            "GetFaxStatus",
            json!(101),
            json!({"FaxJobId": format!("{job}0")}),
        )
        .await;
    assert_fault(status, &answer, 422, 3005);
    assert_eq!(answer["ComponentFaultCode"], 4);
    // A well-formed id of tenant 101 that this cluster never issued (it
    // comes from another gateway) is not found: the job is looked up.
    let other = serve(FAX_AND_IM).await;
    let (status, answer) = other
        .esp(
            "fax",
            "Fax",
            "SendFax",
            json!(101),
            json!({"To": "+14155550100", "Document": "x"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let foreign = answer["Result"]["FaxJobId"].as_str().unwrap();
    let (status, answer) = s
        .esp(
            "fax",
            "Fax",
            "GetFaxStatus",
            json!(101),
            json!({"FaxJobId": foreign}),
        )
        .await;
    assert_fault_says(status, &answer, 422, 3005, "no fax job");
    assert_eq!(answer["ComponentFaultCode"], 4);
}

#[tokio::test]
async fn fax_validation_errors_are_component_faults_with_clear_messages() {
    let s = serve(FAX_AND_IM).await;
    let cases = [
        (json!({"Document": "x"}), "missing parameter 'To'"),
        (
            json!({"To": "4155550100", "Document": "x"}),
            "'4155550100' is not in E.164 form",
        ),
        (
            json!({"To": "+14155550100", "From": "+1", "Document": "x"}),
            "invalid parameter 'From'",
        ),
        (
            json!({"To": "+14155550100"}),
            "missing parameter 'Document'",
        ),
        (
            json!({"To": "+14155550100", "Document": 5}),
            "expected a string or binary, got integer",
        ),
        (
            json!({"To": "+14155550100", "Document": ""}),
            "invalid parameter 'Document': is empty",
        ),
    ];
    for (params, want) in cases {
        let (status, answer) = s
            .esp("fax", "Fax", "SendFax", json!(101), params.clone())
            .await;
        assert_fault(status, &answer, 422, 3005);
        let msg = answer["FaultString"].as_str().unwrap();
        assert!(
            msg.contains(want),
            "{params}: {msg:?} does not say {want:?}"
        );
    }
    let (status, answer) = s
        .esp(
            "im",
            "IM",
            "SendMessage",
            json!(102),
            json!({"To": "agent 7", "Text": "hi"}),
        )
        .await;
    assert_fault(status, &answer, 422, 3005);
    let (status, answer) = s
        .esp(
            "im",
            "IM",
            "SendMessage",
            json!(102),
            json!({"To": "agent-7", "Text": "hi"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["Result"]["MessageId"]
            .as_str()
            .unwrap()
            .starts_with("IM-102-")
    );
}

#[tokio::test]
async fn fax_and_im_never_mix_and_tenants_are_enforced() {
    let s = serve(FAX_AND_IM).await;
    // IM sent to the fax cluster: unsupported.
    let (status, answer) = s
        .esp(
            "fax",
            "IM",
            "SendMessage",
            json!(101),
            json!({"To": "a", "Text": "b"}),
        )
        .await;
    assert_fault(status, &answer, 400, 2000);
    assert!(answer["FaultString"].as_str().unwrap().contains("'Fax'"));
    // A method the fax service does not have.
    let (status, answer) = s
        .esp("fax", "Fax", "SendMessage", json!(101), json!({}))
        .await;
    assert_fault(status, &answer, 400, 2000);
    // Fax for tenant 102, which the fax cluster does not serve.
    let (status, answer) = s
        .esp(
            "fax",
            "Fax",
            "SendFax",
            json!(102),
            json!({"To": "+14155550100", "Document": "x"}),
        )
        .await;
    assert_fault(status, &answer, 503, 2001);
    // Unknown cluster.
    let (status, answer) = s
        .esp("telex", "Fax", "SendFax", json!(101), json!({}))
        .await;
    assert_fault(status, &answer, 404, 2001);
    // Unknown tenant, by id and by name.
    let (status, answer) = s.esp("fax", "Fax", "SendFax", json!(103), json!({})).await;
    assert_fault(status, &answer, 400, 3001);
    let (status, answer) = s
        .esp("fax", "Fax", "SendFax", json!("Nobody"), json!({}))
        .await;
    assert_fault(status, &answer, 400, 3001);
    // Missing tenant.
    let (status, _, answer) = s
        .post_raw(
            "fax",
            json!({"ReferenceId": 5, "Request": {"Service": "Fax", "Method": "SendFax"}})
                .to_string(),
        )
        .await;
    assert_fault(status, &answer, 400, 3001);
    assert_eq!(answer["ReferenceId"], 5);
}

#[tokio::test]
async fn malformed_requests_are_3000_naming_the_path() {
    let s = serve(FAX_AND_IM).await;
    let (status, _, answer) = s
        .post_raw("fax", "{\"ReferenceId\": 1, \"Request\": ")
        .await;
    assert_fault_says(status, &answer, 400, 3000, "malformed JSON");

    let body = json!({"ReferenceId": 9, "Request": {"Service": "Fax", "Method": "SendFax", "TenantId": 101,
        "Parameters": {"To": "+14155550100", "Tags": 1.5}}});
    let (status, _, answer) = s.post_raw("fax", body.to_string()).await;
    assert_fault(status, &answer, 400, 3000);
    assert_eq!(answer["ReferenceId"], 9);
    assert!(
        answer["FaultString"]
            .as_str()
            .unwrap()
            .contains("Request.Parameters.Tags"),
        "{answer}"
    );

    let body = json!({"Request": {"Service": "Fax", "Method": "SendFax", "TenantId": 101,
        "Parameters": {"Opts": {"Deep": [1, 2]}}}});
    let (status, _, answer) = s.post_raw("fax", body.to_string()).await;
    assert_fault_says(status, &answer, 400, 3000, "Request.Parameters.Opts.Deep");

    let (status, _, answer) = s.post_raw("fax", vec![b'x'; 17 << 20]).await;
    assert_fault_says(status, &answer, 400, 3000, "larger than");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("wasp_http_requests_refused_total{reason=\"max-body-bytes\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_trapping_component_fails_only_that_request_and_is_replaced() {
    let s = serve(&chaos_cluster("chaos", "instances = 2")).await;
    let (status, answer) = s.esp("chaos", "Chaos", "Trap", json!(101), json!({})).await;
    assert_fault(status, &answer, 502, 2002);
    let msg = answer["FaultString"].as_str().unwrap();
    assert!(msg.contains("trapped") && msg.contains("retry"), "{msg}");
    assert_eq!(
        s.instance_sum("chaos", "traps").await,
        2,
        "tried, then retried once"
    );
    assert_eq!(s.instance_sum("chaos", "replaced").await, 2);

    // The cluster keeps serving, on fresh instances.
    for _ in 0..10 {
        let (status, answer) = s
            .esp("chaos", "Chaos", "Echo", json!(101), json!({"A": 1}))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["Result"]["A"], 1);
    }
    let c = s.admin_cluster("chaos").await;
    assert!(
        c["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["live"] == true),
        "{c}"
    );
}

#[tokio::test]
async fn a_request_whose_instance_traps_is_retried_on_a_fresh_instance() {
    // Flaky traps on an instance that already served a call.
    let s = serve(&chaos_cluster("chaos", "instances = 1")).await;
    let (status, _) = s.esp("chaos", "Chaos", "Echo", json!(101), json!({})).await;
    assert_eq!(status, 200);
    let (status, answer) = s
        .esp("chaos", "Chaos", "Flaky", json!(101), json!({}))
        .await;
    assert_eq!(status, 200, "the retry answers: {answer}");
    assert_eq!(answer["Result"]["Calls"], 1, "answered by a fresh instance");
    assert_eq!(s.instance_sum("chaos", "traps").await, 1);
    assert_eq!(s.instance_sum("chaos", "replaced").await, 1);
}

#[tokio::test]
async fn an_endless_loop_times_out_with_3002_and_the_instance_is_replaced() {
    let s = serve(&chaos_cluster("chaos", "instances = 1\ntimeout-ms = 300")).await;
    let (status, answer) = s.esp("chaos", "Chaos", "Loop", json!(101), json!({})).await;
    assert_fault_says(
        status,
        &answer,
        504,
        3002,
        "running; the instance was replaced",
    );
    assert_eq!(s.instance_sum("chaos", "timeouts").await, 1);
    assert_eq!(s.instance_sum("chaos", "replaced").await, 1);
    let (status, answer) = s.esp("chaos", "Chaos", "Echo", json!(101), json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Result"]["Calls"], 1, "a fresh instance answers");
}

#[tokio::test]
async fn unbounded_allocation_stops_at_the_memory_limit() {
    let s = serve(&chaos_cluster("chaos", "instances = 2\nmemory-mb = 16")).await;
    let (status, answer) = s
        .esp("chaos", "Chaos", "Alloc", json!(101), json!({}))
        .await;
    assert_fault(status, &answer, 502, 2002);
    let msg = answer["FaultString"].as_str().unwrap();
    assert!(msg.contains("memory limit of 16 MiB exceeded"), "{msg}");
    let (status, _) = s.esp("chaos", "Chaos", "Echo", json!(101), json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_3003_at_once() {
    let s = serve(&chaos_cluster(
        "chaos",
        "instances = 1\nwindow = 1\nqueue = 2\ntimeout-ms = 10000",
    ))
    .await;
    // One long request runs, then two wait: the cluster is full.
    let send = |method: &'static str, millis: u64| {
        let http = s.http.clone();
        let url = s.url("/v1/esp/chaos");
        tokio::spawn(async move {
            let body = json!({"Request": {"Service": "Chaos", "Method": method, "TenantId": 101,
                "Parameters": {"Millis": millis}}});
            http.post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut busy = vec![send("Spin", 3000)];
    while s.admin_cluster("chaos").await["instances"][0]["outstanding"] != 1 {
        assert!(Instant::now() < deadline, "the first request never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    busy.push(send("Echo", 0));
    busy.push(send("Echo", 0));
    while s.admin_cluster("chaos").await["queue"]["depth"] != 2 {
        assert!(Instant::now() < deadline, "the queue never filled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, retry, answer) = s
        .post_raw(
            "chaos",
            json!({"Request": {"Service": "Chaos", "Method": "Echo", "TenantId": 101}}).to_string(),
        )
        .await;
    assert_fault(status, &answer, 503, 3003);
    assert_eq!(retry.as_deref(), Some("1"), "Retry-After is set");
    // Refused at once, not queued: the request that fills the cluster
    // still runs, and the queue still holds its two.
    assert!(
        !busy[0].is_finished(),
        "answered only after the queue moved"
    );
    assert_eq!(s.admin_cluster("chaos").await["queue"]["depth"], 2);
    for task in busy {
        assert_eq!(task.await.unwrap(), 200, "queued requests are still served");
    }
}

#[tokio::test]
async fn a_thousand_requests_spread_over_all_four_fax_instances() {
    let s = serve(FAX_AND_IM).await;
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let http = s.http.clone();
        let url = s.url("/v1/esp/fax");
        tasks.push(tokio::spawn(async move {
            let body = json!({"ReferenceId": i, "Request": {"Service": "Fax", "Method": "SendFax", "TenantId": 101,
                "Parameters": {"To": "+14155550100", "Document": "page"}}});
            let resp = http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let answer: Value = resp.json().await.unwrap();
            drop(permit);
            assert_eq!(answer["ReferenceId"], i);
            status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let c = s.admin_cluster("fax").await;
    let handled: Vec<u64> = c["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["handled"].as_u64().unwrap())
        .collect();
    assert_eq!(handled.len(), 4);
    assert_eq!(handled.iter().sum::<u64>(), 1000, "{handled:?}");
    for h in &handled {
        assert!(
            *h >= 150,
            "each instance gets a fair share of 250: {handled:?}"
        );
    }
}

#[tokio::test]
async fn per_request_instances_keep_no_state() {
    let s = serve(&chaos_cluster("chaos", "policy = \"per-request\"")).await;
    for _ in 0..5 {
        let (status, answer) = s.esp("chaos", "Chaos", "Echo", json!(101), json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(
            answer["Result"]["Calls"], 1,
            "every request sees a fresh instance"
        );
    }
    let pooled = serve(&chaos_cluster("chaos", "instances = 1")).await;
    let mut last = 0;
    for _ in 0..3 {
        let (_, answer) = pooled
            .esp("chaos", "Chaos", "Echo", json!(101), json!({}))
            .await;
        last = answer["Result"]["Calls"].as_i64().unwrap();
    }
    assert_eq!(last, 3, "a pooled instance keeps its state");
}

#[tokio::test]
async fn components_get_no_env_files_or_sockets_but_their_config() {
    let s = serve(&chaos_cluster(
        "chaos",
        "[clusters.chaos.config]\ngreeting = \"hello\"",
    ))
    .await;
    // A live listener: a connection would succeed if sockets were allowed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let (status, answer) = s
        .esp(
            "chaos",
            "Chaos",
            "Peek",
            json!(101),
            json!({ "Socket": target }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let r = &answer["Result"];
    assert_eq!(r["Env"], 0, "{r}");
    assert!(r["File"].as_str().unwrap().starts_with("denied"), "{r}");
    assert!(r["Socket"].as_str().unwrap().starts_with("denied"), "{r}");
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the component reached the listener"
    );
    assert_eq!(r["Config"], json!({"greeting": "hello"}));
}

#[tokio::test]
async fn component_faults_carry_their_own_code() {
    let s = serve(&chaos_cluster("chaos", "")).await;
    let (status, answer) = s
        .esp(
            "chaos",
            "Chaos",
            "Fail",
            json!(101),
            json!({"Code": 42, "Message": "printer on fire"}),
        )
        .await;
    assert_fault(status, &answer, 422, 3005);
    assert_eq!(answer["ComponentFaultCode"], 42);
    assert_eq!(answer["FaultString"], "printer on fire");
}

#[tokio::test]
async fn health_readiness_metrics_and_admin() {
    let s = serve(FAX_AND_IM).await;
    s.esp(
        "fax",
        "Fax",
        "SendFax",
        json!(101),
        json!({"To": "+14155550100", "Document": "x"}),
    )
    .await;
    s.esp("fax", "Fax", "SendFax", json!(102), json!({})).await;
    let get = |p: &str| s.http.get(s.url(p)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let metrics = s.metrics().await;
    for want in [
        "wasp_esp_requests_total{cluster=\"fax\"} 2",
        "wasp_esp_faults_total{cluster=\"fax\",code=\"2001\"} 1",
        "wasp_esp_request_duration_seconds_bucket",
        "wasp_cluster_queue_depth{cluster=\"fax\"} 0",
        "wasp_cluster_instances{cluster=\"fax\"} 4",
        "wasp_cluster_instances{cluster=\"im\"} 2",
        "wasp_instance_handled_total{cluster=\"fax\",instance=\"",
    ] {
        assert!(metrics.contains(want), "metrics lack {want:?}:\n{metrics}");
    }
    let fax = s.admin_cluster("fax").await;
    assert_eq!(fax["service"], "Fax");
    assert_eq!(fax["tenants"], json!([{"id": 101, "name": "Environment"}]));
    assert_eq!(fax["instances"].as_array().unwrap().len(), 4);
    let im = s.admin_cluster("im").await;
    assert_eq!(im["service"], "IM");
    assert_eq!(im["policy"], "per-request");
}

#[tokio::test]
async fn a_request_abandoned_by_its_client_frees_its_place() {
    let s = serve(&chaos_cluster(
        "chaos",
        "instances = 1\nwindow = 1\nqueue = 0",
    ))
    .await;
    for _ in 0..3 {
        let body = json!({"Request": {"Service": "Chaos", "Method": "Spin", "TenantId": 101,
            "Parameters": {"Millis": 400}}});
        let gone = s
            .http
            .post(s.url("/v1/esp/chaos"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_millis(50))
            .send()
            .await;
        assert!(gone.is_err(), "the client gave up");
    }
    // With a window of 1 and no queue, a leaked place would refuse this.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, answer) = s.esp("chaos", "Chaos", "Echo", json!(101), json!({})).await;
        if status == 200 {
            break;
        }
        assert_fault(status, &answer, 503, 3003);
        assert!(
            Instant::now() < deadline,
            "the abandoned requests never freed the instance"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = s.admin_cluster("chaos").await;
    assert_eq!(c["instances"][0]["outstanding"], 0, "{c}");
    assert_eq!(c["queue"]["depth"], 0, "{c}");
}

#[tokio::test]
async fn pooled_instances_retire_after_max_calls() {
    let s = serve(&chaos_cluster("chaos", "instances = 1\nmax-calls = 2")).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (status, answer) = s.esp("chaos", "Chaos", "Echo", json!(101), json!({})).await;
        assert_eq!(status, 200);
        seen.push(answer["Result"]["Calls"].as_i64().unwrap());
    }
    assert_eq!(seen, [1, 2, 1, 2, 1]);
    assert_eq!(s.instance_sum("chaos", "replaced").await, 2);
}

#[tokio::test]
async fn a_plugin_that_floods_the_log_is_held_to_its_budget() {
    let s = serve(&chaos_cluster("chaos", "log-per-second = 5")).await;
    let (status, body) = s
        .esp(
            "chaos",
            "Chaos",
            "Log",
            json!(101),
            json!({"Lines": 200, "Bytes": 100000}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Result"]["Logged"], 200);
    let metrics = s.metrics().await;
    let value = |series: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("metrics lack {series}:\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let written = value("wasp_plugin_log_lines_total{cluster=\"chaos\"}");
    let dropped = value("wasp_plugin_log_dropped_total{cluster=\"chaos\"}");
    // A burst of one second's budget, plus what refilled while the 200
    // lines were written.
    assert!((5..=10).contains(&written), "{written} lines written");
    assert_eq!(written + dropped, 200);
}

#[tokio::test]
async fn repeated_keys_reach_the_component_and_come_back_in_order() {
    let s = serve(&chaos_cluster("chaos", "")).await;
    let body = r#"{"ReferenceId":3,"Request":{"Service":"Chaos","Method":"Echo","TenantId":101,
        "Parameters":{"Tag":"a","Tag":"b","Opt":{"k":1,"k":2}}}}"#;
    let text = s
        .http
        .post(s.url("/v1/esp/chaos"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#""Result":{"Tag":"a","Tag":"b","Opt":{"k":1,"k":2},"Calls":"#),
        "{text}"
    );
}

#[tokio::test]
async fn user_data_is_echoed_on_faults_raised_after_parsing() {
    let s = serve(FAX_AND_IM).await;
    let body = json!({"ReferenceId": 5, "Request": {"Service": "Fax", "Method": "SendFax",
        "TenantId": 102, "Parameters": {}}, "UserData": {"StrategyId": "s-7", "Tag": 1}});
    let (status, _, answer) = s.post_raw("fax", body.to_string()).await;
    assert_fault(status, &answer, 503, 2001);
    assert_eq!(answer["ReferenceId"], 5);
    assert_eq!(answer["UserData"], json!({"StrategyId": "s-7", "Tag": 1}));
}
