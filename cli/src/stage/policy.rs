//! The IAM documents of a stage's function roles: the trust policy (Lambda may assume the
//! role) and the one inline policy, least privilege, every statement on a resource of the
//! stage (its IoT client ids and topics, its prefix in the payload bucket, the function's own
//! log group), never `*`.

use serde_json::{json, Value};

/// Where a role's resources are.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub app: &'a str,
    pub stage: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    /// Lambda's name of the function.
    pub function: &'a str,
    /// The stage's payload bucket.
    pub bucket: &'a str,
}

/// Lambda, and only Lambda, may assume the role.
pub fn trust() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// The AWS partition a region is in (`aws`, `aws-cn`, `aws-us-gov`).
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// What the stub needs, on the stage's resources only.
pub fn stage(scope: &Scope<'_>) -> Value {
    let Scope {
        app,
        stage,
        region,
        account,
        function,
        bucket,
    } = scope;
    let p = partition(region);
    let iot = format!("arn:{p}:iot:{region}:{account}");
    let clients = bridge::client_ids::stage_prefix(app, stage);
    let logs = format!("arn:{p}:logs:{region}:{account}:log-group:/aws/lambda/{function}");
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "BridgeConnect",
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": format!("{iot}:client/{clients}*")
            },
            {
                "Sid": "BridgeTopics",
                "Effect": "Allow",
                "Action": ["iot:Publish", "iot:Receive"],
                "Resource": format!("{iot}:topic/live/{app}/{stage}/*")
            },
            {
                "Sid": "BridgeSubscribe",
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": format!("{iot}:topicfilter/live/{app}/{stage}/*")
            },
            {
                "Sid": "Payloads",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": format!("arn:{p}:s3:::{bucket}/live/{app}/{stage}/*")
            },
            {
                "Sid": "LogGroup",
                "Effect": "Allow",
                "Action": "logs:CreateLogGroup",
                "Resource": logs.clone()
            },
            {
                "Sid": "LogStreams",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": format!("{logs}:*")
            }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope<'static> {
        Scope {
            app: "hello",
            stage: "ci",
            region: "eu-west-1",
            account: "123456789012",
            function: "hello-ci-http",
            bucket: "live-hello-ci-123456789012-eu-west-1",
        }
    }

    #[test]
    fn every_statement_allows_only_resources_of_the_stage() {
        let policy = stage(&scope());
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 6);
        for statement in statements {
            assert_eq!(statement["Effect"], "Allow");
            let resource = statement["Resource"].as_str().unwrap();
            assert_ne!(resource, "*");
            let under_stage = resource.contains("/live/hello/ci/")
                || resource.contains(":client/hello:ci:")
                || resource.contains(":log-group:/aws/lambda/hello-ci-http");
            assert!(under_stage, "{resource}");
        }
        // The payload prefix is the one the stub's object keys use.
        let key = bridge::s3::object_key("hello", "ci", "req", "event");
        assert!(statements[3]["Resource"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{}*", key.trim_end_matches("req/event"))));
        // The client ids the stub connects with are the ones allowed.
        let id = bridge::client_ids::stub("hello", "ci", "env1");
        let allowed = statements[0]["Resource"].as_str().unwrap();
        assert!(id.starts_with(
            allowed
                .split(":client/")
                .nth(1)
                .unwrap()
                .trim_end_matches('*')
        ));
    }

    #[test]
    fn regions_outside_the_main_partition_get_theirs() {
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition("eu-central-2"), "aws");
        let china = stage(&Scope {
            region: "cn-north-1",
            ..scope()
        });
        assert!(china.to_string().contains("arn:aws-cn:iot:cn-north-1:"));
    }
}
