"""botocore's presigned S3 object URL (S3SigV4QueryAuth), the independent check of live's.

usage: s3_presign.py METHOD URL REGION ACCESS_KEY SECRET TOKEN|- AMZDATE EXPIRES
"""
import datetime
import sys
from unittest import mock

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

method, url, region, key, secret, token, amzdate, expires = sys.argv[1:9]
credentials = Credentials(key, secret, None if token == "-" else token)
auth = S3SigV4QueryAuth(credentials, "s3", region, expires=int(expires))
request = AWSRequest(method=method, url=url)
now = datetime.datetime.strptime(amzdate, "%Y%m%dT%H%M%SZ")
with mock.patch("botocore.auth.get_current_datetime", return_value=now):
    auth.add_auth(request)
print(request.url)
