//! The OTLP sink's requests: headers, gzip, and what the receiver's answer means.

use std::{io::Write as _, time::Instant};

use flate2::{Compression, write::GzEncoder};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message as _;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tracing::debug;

use super::{
    config::{OtlpCompression, OtlpSinkConfig},
    error::OtlpError,
};
use crate::{
    sink::SinkError,
    sinks::http::client::{Answer, ClientSettings, PostClient},
};

/// The OTLP/HTTP logs path, appended to the configured endpoint.
pub(crate) const LOGS_PATH: &str = "/v1/logs";

/// How the receiver answered, when the answer says something about the request itself.
#[derive(Debug)]
pub(crate) enum ExportOutcome {
    /// 2xx and nothing rejected.
    Accepted,
    /// 413: the request is too large.
    TooLarge(OtlpError),
    /// 400, or a partial success that rejected records: retrying cannot help.
    Refused(OtlpError),
}

/// Sends export requests to one receiver.
#[derive(Debug)]
pub(crate) struct ExportClient {
    client: PostClient,
    /// The configured headers, values marked sensitive so no `Debug` shows them.
    headers: HeaderMap,
    compression: OtlpCompression,
}

impl ExportClient {
    pub(crate) fn new(config: &OtlpSinkConfig) -> Result<ExportClient, SinkError> {
        let client = PostClient::new(ClientSettings {
            endpoint: &config.endpoint,
            path: LOGS_PATH,
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
            tls: &config.tls,
        })
        .map_err(|error| error.into_sink_error())?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers.0 {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                OtlpError::config(format!("headers: {name:?} is not a header name"))
            })?;
            // The value is not quoted: it may be a secret.
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                OtlpError::config(format!(
                    "headers.{name}: the value is not a valid header value"
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        Ok(ExportClient {
            client,
            headers,
            compression: config.compression,
        })
    }

    /// Sends one encoded `ExportLogsServiceRequest`.
    pub(crate) async fn export(&self, request: Vec<u8>) -> Result<ExportOutcome, SinkError> {
        let started = Instant::now();
        let body = match self.compression {
            OtlpCompression::Gzip => gzip(&request)?,
            OtlpCompression::None => request,
        };
        let body_bytes = body.len();
        let mut builder = self
            .client
            .post()
            .headers(self.headers.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )
            .body(body);
        if self.compression == OtlpCompression::Gzip {
            builder = builder.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let answer = self.client.send(builder).await?;
        debug!(
            status = answer.status.as_u16(),
            body_bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "otlp export answered"
        );
        classify(answer)
    }
}

fn gzip(raw: &[u8]) -> Result<Vec<u8>, SinkError> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(raw.len() / 4 + 64), Compression::fast());
    encoder
        .write_all(raw)
        .and_then(|()| encoder.finish())
        .map_err(SinkError::transient)
}

/// Decides what an answer means: 2xx accepted (unless a partial success rejected records);
/// 429 and 503 transient after the receiver's `Retry-After`; 408 and 5xx transient; 413 too
/// large; 400 refused; other 4xx (401, 403, 404) permanent.
pub(crate) fn classify(answer: Answer) -> Result<ExportOutcome, SinkError> {
    let code = answer.status.as_u16();
    if answer.status.is_success() {
        return Ok(
            partial_rejection(&answer.body).map_or(ExportOutcome::Accepted, ExportOutcome::Refused)
        );
    }
    let error = OtlpError::Status {
        status: code,
        body: answer.text(),
    };
    Ok(match code {
        400 => ExportOutcome::Refused(error),
        413 => ExportOutcome::TooLarge(error),
        429 | 503 if answer.retry_after.is_some() => {
            let delay = answer.retry_after.unwrap_or_default();
            return Err(SinkError::transient_after(error, delay));
        }
        408 | 429 => return Err(SinkError::transient(error)),
        _ if answer.status.is_server_error() => return Err(SinkError::transient(error)),
        _ => return Err(SinkError::permanent(error)),
    })
}

/// The rejection a success answer's `ExportLogsServiceResponse` reports, if any. A body that
/// is not such a message (some receivers answer JSON or nothing) rejects nothing.
fn partial_rejection(body: &[u8]) -> Option<OtlpError> {
    let response = ExportLogsServiceResponse::decode(body).ok()?;
    let partial = response.partial_success?;
    (partial.rejected_log_records > 0).then_some(OtlpError::PartialSuccess {
        rejected: partial.rejected_log_records,
        message: partial.error_message,
    })
}
