"""The stage's bucket on moto, as the tests set it up and check it.

usage: s3_bucket.py ENDPOINT create|count BUCKET

`create` makes the bucket with a one-day expiry rule; `count` prints how many objects it
holds.
"""
import sys

from moto_client import client

endpoint, command, bucket = sys.argv[1:4]
s3 = client("s3", endpoint)
if command == "create":
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": [{
            "ID": "live-payloads", "Status": "Enabled", "Filter": {"Prefix": "live/"},
            "Expiration": {"Days": 1},
        }]},
    )
    print("created")
elif command == "count":
    print(s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0))
