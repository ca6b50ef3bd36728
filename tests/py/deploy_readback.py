"""Everything of one stage that `live deploy` made, read back from moto with boto3 (an
independent client), as JSON on stdout.

usage: deploy_readback.py ENDPOINT APP STAGE

Functions and roles are found by their `live:app` / `live:stage` tags, buckets likewise; a
resource without them is left out (and listed under `untagged` by name, to show it exists).
`layers` names every layer of the account.
"""
import json
import sys
import urllib.parse

from moto_client import client

endpoint, app, stage = sys.argv[1:4]
lam, iam, s3 = (client(s, endpoint) for s in ("lambda", "iam", "s3"))


def ours(tags):
    return tags.get("live:app") == app and tags.get("live:stage") == stage


def doc(text):
    if isinstance(text, dict):
        return text
    return json.loads(urllib.parse.unquote(text))


out = {"functions": {}, "roles": {}, "buckets": {}, "untagged": [],
       "layers": sorted(l["LayerName"] for l in lam.list_layers()["Layers"])}
for page in lam.get_paginator("list_functions").paginate():
    for f in page["Functions"]:
        got = lam.get_function(FunctionName=f["FunctionName"])
        tags = got.get("Tags", {})
        if not ours(tags):
            out["untagged"].append(f["FunctionName"])
            continue
        c = got["Configuration"]
        entry = {k: c.get(k) for k in (
            "FunctionArn", "Runtime", "Handler", "Timeout", "MemorySize", "Role",
            "CodeSha256", "Architectures", "RevisionId", "LastModified", "Description")}
        entry["Environment"] = c.get("Environment", {}).get("Variables", {})
        entry["Tags"] = tags
        try:
            u = lam.get_function_url_config(FunctionName=f["FunctionName"])
            entry["Url"] = {"FunctionUrl": u["FunctionUrl"], "AuthType": u["AuthType"]}
        except lam.exceptions.ResourceNotFoundException:
            entry["Url"] = None
        try:
            policy = json.loads(lam.get_policy(FunctionName=f["FunctionName"])["Policy"])
            entry["Permissions"] = sorted(
                ({"Action": s["Action"], "Principal": s["Principal"], "Condition": s.get("Condition")}
                 for s in policy["Statement"]),
                key=lambda s: s["Action"])
        except lam.exceptions.ResourceNotFoundException:
            entry["Permissions"] = []
        out["functions"][f["FunctionName"]] = entry
for page in iam.get_paginator("list_roles").paginate():
    for r in page["Roles"]:
        tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=r["RoleName"])["Tags"]}
        if not ours(tags):
            out["untagged"].append(r["RoleName"])
            continue
        names = iam.list_role_policies(RoleName=r["RoleName"])["PolicyNames"]
        out["roles"][r["RoleName"]] = {
            "Arn": r["Arn"],
            "Path": r["Path"],
            "Trust": doc(r["AssumeRolePolicyDocument"]),
            "Inline": {n: doc(iam.get_role_policy(RoleName=r["RoleName"], PolicyName=n)["PolicyDocument"]) for n in names},
            "Attached": [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=r["RoleName"])["AttachedPolicies"]],
            "Tags": tags,
        }
for b in s3.list_buckets()["Buckets"]:
    name = b["Name"]
    try:
        tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=name)["TagSet"]}
    except Exception:
        tags = {}
    if not ours(tags):
        out["untagged"].append(name)
        continue
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    except Exception:
        rules = []
    try:
        block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    except Exception:
        block = None
    out["buckets"][name] = {"Rules": rules, "PublicAccessBlock": block, "Tags": tags}
print(json.dumps(out, sort_keys=True))
