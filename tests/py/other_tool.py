"""Functions as another tool (CDK, SAM, Terraform) would have deployed them, on moto, and
their configuration read back: the originals `live attach` must give back exactly.

usage: other_tool.py ENDPOINT create python|python3.11|provided NAME ZIP_OUT
       other_tool.py ENDPOINT config NAME
       other_tool.py ENDPOINT location NAME      (the path of its code location)
       other_tool.py ENDPOINT policies NAME      (the inline policies of its role)
       other_tool.py ENDPOINT records BUCKET     (attach records, and objects under attach/)

`create` prints the function's configuration as JSON and writes its code zip to ZIP_OUT;
`config` prints it again.
"""
import io
import json
import sys
import zipfile

from moto_client import client

endpoint, command = sys.argv[1:3]
lam, iam, s3 = (client(s, endpoint) for s in ("lambda", "iam", "s3"))


def config(name):
    c = lam.get_function_configuration(FunctionName=name)
    c.pop("ResponseMetadata", None)
    return c


if command == "create":
    kind, name, zip_out = sys.argv[3:6]
    role = iam.create_role(
        RoleName=f"{name}-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}),
    )["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        if kind.startswith("python"):
            z.writestr("index.py", "def handler(event, context):\n    return {'from': 'the cloud'}\n")
        else:
            info = zipfile.ZipInfo("bootstrap")
            info.external_attr = 0o755 << 16
            z.writestr(info, "#!/bin/sh\necho 'the original bootstrap'\n")
            z.writestr("lib/data.txt", "kept")
    code = buf.getvalue()
    with open(zip_out, "wb") as f:
        f.write(code)
    layer = lam.publish_layer_version(
        LayerName=f"{name}-deps", Content={"ZipFile": code})["LayerVersionArn"]
    lam.create_function(
        FunctionName=name,
        Runtime={"python": "python3.12", "python3.11": "python3.11"}.get(kind, "provided.al2023"),
        Handler="index.handler" if kind.startswith("python") else "bootstrap",
        Role=role,
        Code={"ZipFile": code},
        Timeout=7,
        MemorySize=256,
        Environment={"Variables": {"GREETING": "hello from the cloud"}},
        Layers=[layer],
        Tags={"owner": "other-tool"},
    )
    print(json.dumps(config(name), sort_keys=True, default=str))
elif command == "config":
    print(json.dumps(config(sys.argv[3]), sort_keys=True, default=str))
elif command == "location":
    location = lam.get_function(FunctionName=sys.argv[3])["Code"]["Location"]
    print("/" + location.split("://", 1)[1].split("/", 1)[1])
elif command == "policies":
    print(json.dumps(iam.list_role_policies(RoleName=f"{sys.argv[3]}-role")["PolicyNames"]))
elif command == "records":
    try:
        got = s3.list_objects_v2(Bucket=sys.argv[3], Prefix="attach/")
        keys = [o["Key"] for o in got.get("Contents", [])]
        # A record, and the code it saved (OS-only runtimes) counted with it.
        print(sum(1 for k in keys if k.endswith(".json")), len(keys))
    except s3.exceptions.NoSuchBucket:
        print(0, 0)
