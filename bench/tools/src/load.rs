//! `bench-tools load`: an open-loop, fixed-rate load of one gRPC request
//! (the framed CheckRequest `--body`) over a few HTTP/2 connections, with
//! per-request latency percentiles.
//!
//! h2load's `--rps` mode (nghttp2 1.52) writes the requests of an rps tick
//! only at the next tick, so every latency it logs includes ~10 ms of its own
//! waiting; this measures what the server adds. Requests are issued on a
//! fixed schedule (tokio's timer: 1 ms resolution, so small bursts) whether or
//! not earlier ones have been answered; a request's latency runs from when it
//! is issued to the end of its response trailers. `lag` is how late the
//! generator issued requests against the schedule (its own overload shows
//! there). Every response must be gRPC OK with a CheckResponse of status OK.

use std::time::{Duration, Instant};

use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::CheckResponse;
use h2::client::SendRequest;
use prost::Message;
use tokio::net::TcpStream;

const PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

struct Options {
    addr: String,
    body: String,
    rate: f64,
    duration: f64,
    connections: usize,
    warmup: usize,
}

pub(crate) fn run(args: &[String]) -> Result<String, String> {
    let mut o = Options {
        addr: String::new(),
        body: String::new(),
        rate: 1000.0,
        duration: 10.0,
        connections: 2,
        warmup: 200,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<f64>()
                .map_err(|_| format!("{flag} takes a number"))
        };
        match flag.as_str() {
            "--addr" => o.addr = value.clone(),
            "--body" => o.body = value.clone(),
            "--rate" => o.rate = number()?,
            "--duration" => o.duration = number()?,
            "--connections" => o.connections = number()? as usize,
            "--warmup" => o.warmup = number()? as usize,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if o.addr.is_empty() || o.body.is_empty() || o.rate <= 0.0 || o.connections == 0 {
        return Err(
            "usage: bench-tools load --addr HOST:PORT --body FILE --rate RPS \
                    [--duration SECS] [--connections N] [--warmup N]"
                .into(),
        );
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(load(o))
}

/// One Check; Ok(true) when the CheckResponse allows.
async fn check(send: SendRequest<Bytes>, uri: http::Uri, body: Bytes) -> Result<bool, String> {
    let mut send = send.ready().await.map_err(|e| format!("connection: {e}"))?;
    let request = http::Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|e| e.to_string())?;
    let (response, mut stream) = send
        .send_request(request, false)
        .map_err(|e| format!("send: {e}"))?;
    stream
        .send_data(body, true)
        .map_err(|e| format!("send body: {e}"))?;
    let response = response.await.map_err(|e| format!("response: {e}"))?;
    let (parts, mut recv) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        return Err(format!("HTTP status {}", parts.status));
    }
    let mut message = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        message.extend_from_slice(&chunk);
    }
    let trailers = recv
        .trailers()
        .await
        .map_err(|e| format!("trailers: {e}"))?;
    let grpc_status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| parts.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("missing");
    if grpc_status != "0" {
        return Err(format!("grpc-status {grpc_status}"));
    }
    if message.len() < 5 {
        return Err("empty gRPC message".into());
    }
    let response = CheckResponse::decode(&message[5..]).map_err(|e| e.to_string())?;
    Ok(response.status.map_or(0, |s| s.code) == 0)
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1].as_secs_f64() * 1e3
}

async fn load(o: Options) -> Result<String, String> {
    let body = Bytes::from(std::fs::read(&o.body).map_err(|e| format!("{}: {e}", o.body))?);
    let uri: http::Uri = format!("http://{}{PATH}", o.addr)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut connections = Vec::new();
    for _ in 0..o.connections {
        let tcp = TcpStream::connect(&o.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", o.addr))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        // h2 closes a connection whose peer sends "too many" small DATA
        // frames that are not read yet (gRPC responses are exactly that);
        // when this process is descheduled for a moment on a busy machine a
        // backlog of responses would trip it. Generous windows and budget.
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .data_frame_budget(1 << 30)
            .handshake(tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        connections.push(send);
    }
    for i in 0..o.warmup {
        check(
            connections[i % o.connections].clone(),
            uri.clone(),
            body.clone(),
        )
        .await?;
    }

    let total = (o.rate * o.duration).round().max(1.0) as usize;
    let period = Duration::from_secs_f64(1.0 / o.rate);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    let mut lags = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + period.mul_f64(i as f64);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let issued = Instant::now();
        lags.push(issued - due);
        let send = connections[i % o.connections].clone();
        let (uri, body) = (uri.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let result = check(send, uri, body).await;
            (result, issued.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let (mut allowed, mut denied, mut errors, mut first_error) = (0u64, 0u64, 0u64, None);
    for task in tasks {
        let (result, latency) = task.await.map_err(|e| e.to_string())?;
        match result {
            Ok(true) => allowed += 1,
            Ok(false) => denied += 1,
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
        latencies.push(latency);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    lags.sort_unstable();
    Ok(format!(
        "{{\"requests\": {total}, \"allowed\": {allowed}, \"denied\": {denied}, \"errors\": {errors}, \
         \"first_error\": {:?}, \"elapsed_s\": {elapsed:.3}, \"achieved_rps\": {:.1}, \
         \"p50_ms\": {:.4}, \"p99_ms\": {:.4}, \"p999_ms\": {:.4}, \"max_ms\": {:.4}, \
         \"lag_p99_ms\": {:.4}, \"lag_max_ms\": {:.4}}}",
        first_error.unwrap_or_default(),
        total as f64 / elapsed,
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
        percentile_ms(&latencies, 99.9),
        percentile_ms(&latencies, 100.0),
        percentile_ms(&lags, 99.0),
        percentile_ms(&lags, 100.0),
    ))
}
