//! Bundled `Social` service: the Social Messaging Server's Facebook- and
//! Twitter-style methods, each one call on the configured API.
//!
//! Facebook-style (Graph API shape, base `facebook-api`):
//! - `SubmitPost` (`PageId`, `Message`) → `POST {base}/{PageId}/feed` → `PostId`
//! - `SubmitComment` (`ObjectId`, `Message`) → `POST {base}/{ObjectId}/comments` → `CommentId`
//! - `SubmitPrivateMessage` (`RecipientId`, `Message`) → `POST {base}/me/messages` → `MessageId`
//! - `LikePublication` (`ObjectId`) → `POST {base}/{ObjectId}/likes` → `Success`
//! - `DeleteObject` (`ObjectId`) → `DELETE {base}/{ObjectId}` → `Success`
//!
//! Twitter-style (API v2 shape, base `twitter-api`, own user
//! `twitter-user-id.<tenant>`):
//! - `SendMessage` (`UserId`, `Text`) → `POST {base}/2/dm_conversations/with/{UserId}/messages` → `MessageId`
//! - `RetweetTweet` (`TweetId`) → `POST {base}/2/users/{me}/retweets` → `Retweeted`
//! - `FollowUser` (`UserId`) → `POST {base}/2/users/{me}/following` → `Following`
//! - `GetUserInfo` (`UserId`) → `GET {base}/2/users/{UserId}` → `UserId`, `Name`, `UserName`, `Followers`
//!
//! Credentials come from the cluster config per tenant
//! (`facebook-token.<tenant>`, `twitter-token.<tenant>`), are sent as
//! bearer tokens and never logged. An API error becomes a component fault
//! carrying the API's own message.

use serde_json::{Value as Json, json};
use wasp_sdk::{Fault, Kv, Request, Service, codes, config, http};

struct Social;

/// Fault code: the social API refused or failed.
const API_FAILED: i32 = 12;

impl Service for Social {
    const SERVICE_TYPE: &'static str = "Social";
    const VERSION: &'static str = "1.0";
    const METHODS: &'static [&'static str] = &[
        "SubmitPost",
        "SubmitComment",
        "SubmitPrivateMessage",
        "LikePublication",
        "DeleteObject",
        "SendMessage",
        "RetweetTweet",
        "FollowUser",
        "GetUserInfo",
    ];

    fn handle(req: Request) -> Result<Kv, Fault> {
        let p = &req.parameters;
        let fb = || Api::new("facebook", req.tenant.id);
        let tw = || Api::new("twitter", req.tenant.id);
        match req.method.as_str() {
            "SubmitPost" => {
                let page = segment("PageId", p.require_str("PageId")?)?;
                let message = p.require_str("Message")?;
                let r = fb()?.call(
                    "POST",
                    &format!("/{page}/feed"),
                    Some(json!({"message": message})),
                )?;
                Ok(Kv::new().with("PostId", id(&r)?))
            }
            "SubmitComment" => {
                let object = segment("ObjectId", p.require_str("ObjectId")?)?;
                let message = p.require_str("Message")?;
                let r = fb()?.call(
                    "POST",
                    &format!("/{object}/comments"),
                    Some(json!({"message": message})),
                )?;
                Ok(Kv::new().with("CommentId", id(&r)?))
            }
            "SubmitPrivateMessage" => {
                let recipient = p.require_str("RecipientId")?;
                let message = p.require_str("Message")?;
                let body = json!({"recipient": {"id": recipient}, "message": {"text": message}});
                let r = fb()?.call("POST", "/me/messages", Some(body))?;
                Ok(Kv::new().with(
                    "MessageId",
                    r["message_id"]
                        .as_str()
                        .map(str::to_string)
                        .map_or_else(|| id(&r), Ok)?,
                ))
            }
            "LikePublication" => {
                let object = segment("ObjectId", p.require_str("ObjectId")?)?;
                let r = fb()?.call("POST", &format!("/{object}/likes"), None)?;
                Ok(Kv::new().with("Success", i64::from(r["success"].as_bool().unwrap_or(true))))
            }
            "DeleteObject" => {
                let object = segment("ObjectId", p.require_str("ObjectId")?)?;
                let r = fb()?.call("DELETE", &format!("/{object}"), None)?;
                Ok(Kv::new().with("Success", i64::from(r["success"].as_bool().unwrap_or(true))))
            }
            "SendMessage" => {
                let user = segment("UserId", p.require_str("UserId")?)?;
                let text = p.require_str("Text")?;
                let r = tw()?.call(
                    "POST",
                    &format!("/2/dm_conversations/with/{user}/messages"),
                    Some(json!({"text": text})),
                )?;
                let id = r["data"]["dm_event_id"]
                    .as_str()
                    .map(str::to_string)
                    .map_or_else(|| id(&r), Ok)?;
                Ok(Kv::new().with("MessageId", id))
            }
            "RetweetTweet" => {
                let tweet = p.require_str("TweetId")?;
                let api = tw()?;
                let me = api.me()?;
                let r = api.call(
                    "POST",
                    &format!("/2/users/{me}/retweets"),
                    Some(json!({"tweet_id": tweet})),
                )?;
                Ok(Kv::new().with(
                    "Retweeted",
                    i64::from(r["data"]["retweeted"].as_bool().unwrap_or(false)),
                ))
            }
            "FollowUser" => {
                let user = p.require_str("UserId")?;
                let api = tw()?;
                let me = api.me()?;
                let r = api.call(
                    "POST",
                    &format!("/2/users/{me}/following"),
                    Some(json!({"target_user_id": user})),
                )?;
                Ok(Kv::new().with(
                    "Following",
                    i64::from(r["data"]["following"].as_bool().unwrap_or(false)),
                ))
            }
            "GetUserInfo" => {
                let user = segment("UserId", p.require_str("UserId")?)?;
                let r = tw()?.call("GET", &format!("/2/users/{user}"), None)?;
                let d = &r["data"];
                Ok(Kv::new()
                    .with("UserId", d["id"].as_str().unwrap_or_default())
                    .with("Name", d["name"].as_str().unwrap_or_default())
                    .with("UserName", d["username"].as_str().unwrap_or_default())
                    .with(
                        "Followers",
                        d["public_metrics"]["followers_count"].as_i64().unwrap_or(0),
                    ))
            }
            other => Err(Fault::unknown_method(other)),
        }
    }
}

/// An id used as a URL path segment: no slashes, queries or spaces.
fn segment<'a>(name: &str, value: &'a str) -> Result<&'a str, Fault> {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        Ok(value)
    } else {
        Err(Fault::invalid(
            name,
            format!("'{value}' is not an id (letters, digits, '_', '-', '.')"),
        ))
    }
}

fn id(answer: &Json) -> Result<String, Fault> {
    answer["id"]
        .as_str()
        .map(str::to_string)
        .or_else(|| answer["data"]["id"].as_str().map(str::to_string))
        .ok_or_else(|| Fault::new(API_FAILED, format!("the API's answer has no id: {answer}")))
}

/// One social API for one tenant.
struct Api {
    name: &'static str,
    base: String,
    token: String,
    tenant: u32,
}

impl Api {
    fn new(name: &'static str, tenant: u32) -> Result<Api, Fault> {
        let base = config::get(&format!("{name}-api")).ok_or_else(|| {
            Fault::new(
                codes::INTERNAL,
                format!("no {name} API configured (config {name}-api)"),
            )
        })?;
        let token = config::get(&format!("{name}-token.{tenant}")).ok_or_else(|| {
            Fault::new(
                codes::INTERNAL,
                format!("no {name} credentials for tenant {tenant} (config {name}-token.{tenant})"),
            )
        })?;
        Ok(Api {
            name,
            base: base.trim_end_matches('/').to_string(),
            token,
            tenant,
        })
    }

    /// The tenant's own Twitter user id.
    fn me(&self) -> Result<String, Fault> {
        config::get(&format!("{}-user-id.{}", self.name, self.tenant)).ok_or_else(|| {
            Fault::new(
                codes::INTERNAL,
                format!(
                    "no {} user id for tenant {} (config {}-user-id.{})",
                    self.name, self.tenant, self.name, self.tenant
                ),
            )
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<Json>) -> Result<Json, Fault> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("authorization", auth.as_str())];
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        if !payload.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        let response = http::request(method, &url, &headers, payload.as_bytes())?;
        response.json_or_fault(&format!("{} API", self.name), API_FAILED)
    }
}

wasp_sdk::export!(Social);
