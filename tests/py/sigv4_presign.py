"""botocore's presigned IoT Core URL, the independent check of live's signer and verifier.

usage: sigv4_presign.py URL REGION ACCESS_KEY SECRET TOKEN|- AMZDATE|now EXPIRES

Signs GET URL with SigV4QueryAuth (service iotdevicegateway) without the session token,
then appends it as X-Amz-Security-Token, as IoT Core demands; prints the URL. A `signed`
TOKEN argument prefix (signed:TOKEN) signs the token inside the query instead, as a
generic presigner would, to check that the broker refuses it.
"""
import datetime
import sys
import urllib.parse
from unittest import mock

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def presign(url, region, key, secret, token, amzdate, expires):
    inside = token is not None and token.startswith("signed:")
    if inside:
        token = token[len("signed:"):]
    credentials = Credentials(key, secret, token if inside else None)
    auth = SigV4QueryAuth(credentials, "iotdevicegateway", region, expires=expires)
    # botocore signs an https URL; the signature covers the host and path only.
    parts = urllib.parse.urlsplit(url)
    request = AWSRequest(method="GET", url=urllib.parse.urlunsplit(("https",) + parts[1:]))
    if amzdate == "now":
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    else:
        now = datetime.datetime.strptime(amzdate, "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        auth.add_auth(request)
    signed = urllib.parse.urlunsplit((parts.scheme,) + urllib.parse.urlsplit(request.url)[1:])
    if token is not None and not inside:
        signed += "&X-Amz-Security-Token=" + urllib.parse.quote(token, safe="")
    return signed


if __name__ == "__main__":
    url, region, key, secret, token, amzdate, expires = sys.argv[1:8]
    print(presign(url, region, key, secret, None if token == "-" else token, amzdate, int(expires)))
