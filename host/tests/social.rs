//! The bundled Social service against the mock social APIs: method, path,
//! payload and credentials of every call; API errors become faults.

mod common;

use common::*;
use serde_json::json;
use wasp::tools::demo::Mocks;

fn cluster(mocks: &Mocks) -> String {
    format!(
        r#"
[clusters.social]
service = "Social"
component = "builtin:social"
tenants = [101, 102]
[clusters.social.http]
allow = ["127.0.0.1:{port}"]
[clusters.social.config]
facebook-api = "http://127.0.0.1:{port}/facebook"
twitter-api = "http://127.0.0.1:{port}/twitter"
"facebook-token.101" = "fb-secret-101"
"twitter-token.101" = "tw-secret-101"
"twitter-user-id.101" = "9001"
"#,
        port = mocks.addr.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_makes_the_right_api_call() {
    let mocks = Mocks::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let s = serve(&cluster(&mocks)).await;
    let cases = [
        (
            "SubmitPost",
            json!({"PageId": "page1", "Message": "Hello"}),
            "POST",
            "/facebook/page1/feed",
            json!({"message": "Hello"}),
            "PostId",
        ),
        (
            "SubmitComment",
            json!({"ObjectId": "post7", "Message": "Thanks"}),
            "POST",
            "/facebook/post7/comments",
            json!({"message": "Thanks"}),
            "CommentId",
        ),
        (
            "SubmitPrivateMessage",
            json!({"RecipientId": "u5", "Message": "Hi"}),
            "POST",
            "/facebook/me/messages",
            json!({"recipient": {"id": "u5"}, "message": {"text": "Hi"}}),
            "MessageId",
        ),
        (
            "LikePublication",
            json!({"ObjectId": "post7"}),
            "POST",
            "/facebook/post7/likes",
            json!(null),
            "Success",
        ),
        (
            "DeleteObject",
            json!({"ObjectId": "post7"}),
            "DELETE",
            "/facebook/post7",
            json!(null),
            "Success",
        ),
        (
            "SendMessage",
            json!({"UserId": "77", "Text": "DM"}),
            "POST",
            "/twitter/2/dm_conversations/with/77/messages",
            json!({"text": "DM"}),
            "MessageId",
        ),
        (
            "RetweetTweet",
            json!({"TweetId": "t1"}),
            "POST",
            "/twitter/2/users/9001/retweets",
            json!({"tweet_id": "t1"}),
            "Retweeted",
        ),
        (
            "FollowUser",
            json!({"UserId": "88"}),
            "POST",
            "/twitter/2/users/9001/following",
            json!({"target_user_id": "88"}),
            "Following",
        ),
        (
            "GetUserInfo",
            json!({"UserId": "88"}),
            "GET",
            "/twitter/2/users/88",
            json!(null),
            "Followers",
        ),
    ];
    for (i, (method, params, http_method, path, payload, result_key)) in
        cases.into_iter().enumerate()
    {
        let (status, answer) = s.esp("social", "Social", method, json!(101), params).await;
        assert_eq!(status, 200, "{method}: {answer}");
        assert!(
            answer["Result"].get(result_key).is_some(),
            "{method}: {answer}"
        );
        let got = mocks.requests();
        let call = &got[i];
        assert_eq!(
            (call.method.as_str(), call.path.as_str()),
            (http_method, path),
            "{method}"
        );
        assert_eq!(call.body, payload, "{method}");
        let token = if path.starts_with("/facebook") {
            "Bearer fb-secret-101"
        } else {
            "Bearer tw-secret-101"
        };
        assert_eq!(call.authorization.as_deref(), Some(token), "{method}");
    }
    let (_, answer) = s
        .esp(
            "social",
            "Social",
            "GetUserInfo",
            json!(101),
            json!({"UserId": "88"}),
        )
        .await;
    assert_eq!(answer["Result"]["UserName"], "user88");
    assert_eq!(answer["Result"]["Followers"], 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_and_missing_credentials_are_component_faults() {
    let mocks = Mocks::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let s = serve(&cluster(&mocks)).await;
    let (status, answer) = s
        .esp(
            "social",
            "Social",
            "DeleteObject",
            json!(101),
            json!({"ObjectId": "missing-1"}),
        )
        .await;
    assert_fault(status, &answer, 422, 3005);
    assert_eq!(answer["ComponentFaultCode"], 12);
    assert!(
        answer["FaultString"]
            .as_str()
            .unwrap()
            .contains("Object does not exist"),
        "{answer}"
    );

    let (status, answer) = s
        .esp(
            "social",
            "Social",
            "SubmitPost",
            json!(102),
            json!({"PageId": "p", "Message": "m"}),
        )
        .await;
    assert_fault_says(
        status,
        &answer,
        422,
        3005,
        "no facebook credentials for tenant 102",
    );

    let (status, answer) = s
        .esp(
            "social",
            "Social",
            "SubmitPost",
            json!(101),
            json!({"PageId": "../admin", "Message": "m"}),
        )
        .await;
    assert_fault_says(status, &answer, 422, 3005, "is not an id");
    assert!(
        mocks.requests().iter().all(|r| !r.path.contains("admin")),
        "a bad id never reaches the API"
    );
}
