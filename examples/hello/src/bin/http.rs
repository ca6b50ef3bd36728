//! An HTTP handler on `lambda_http`, for Function URLs and API Gateway: greets `?name=`.

use lambda_http::{run, service_fn, Body, Error, Request, RequestExt, Response};

async fn handler(request: Request) -> Result<Response<Body>, Error> {
    let name = request
        .query_string_parameters_ref()
        .and_then(|params| params.first("name"))
        .unwrap_or("world")
        .to_string();
    let response = Response::builder()
        .status(200)
        .header("content-type", "text/plain; charset=utf-8")
        .body(format!("Hello, {name}! (served by live from {})\n", request.uri().path()).into())?;
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(handler)).await
}
