"""boto3 clients of moto's server, as the test scripts call it (fixed region and dummy
credentials: moto accepts any signature)."""
import boto3


def client(service, endpoint):
    return boto3.client(
        service, endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )
