//! The JSON log line, written by hand for events outside any span (the access log's line is
//! one): the same keys, in the same order, with the same values as tracing-subscriber's JSON
//! formatter, which still writes every other event.
//!
//! The stock formatter formats the timestamp into a fresh `String` and streams the fields
//! through serde; a perf profile of polls put about 3 % of the server's CPU samples in that
//! formatting. Here the line is written straight into the subscriber's buffer.

use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON event format: by hand outside spans, the stock formatter inside them.
pub(super) struct FastJson {
    stock: Format<Json>,
}

impl FastJson {
    pub(super) fn new() -> Self {
        FastJson {
            stock: tracing_subscriber::fmt::format().json(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for FastJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        // Span fields, and events bridged from the `log` crate (whose metadata the stock
        // formatter rewrites), are left to the stock formatter.
        let in_span = event.parent().is_some() || ctx.lookup_current().is_some();
        if in_span || meta.fields().field("log.target").is_some() {
            return self.stock.format_event(ctx, writer, event);
        }
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":\"");
        write_timestamp(&mut line, SystemTime::now());
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push_str("\",\"fields\":{");
        let mut fields = Fields {
            line: &mut line,
            first: true,
        };
        event.record(&mut fields);
        line.push_str("},\"target\":");
        write_json_str(&mut line, meta.target());
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

/// Writes each field as `"name":value`, the way tracing-serde does.
struct Fields<'a> {
    line: &'a mut String,
    first: bool,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        if !self.first {
            self.line.push(',');
        }
        self.first = false;
        write_json_str(self.line, field.name());
        self.line.push(':');
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.line.push('"');
        let _ = write!(Escaping(self.line), "{value:?}");
        self.line.push('"');
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        write_json_str(self.line, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        // Rare in this program: serde_json's own spelling (NaN and infinities as null).
        let number = serde_json::to_string(&value).unwrap_or_else(|_| "null".into());
        self.line.push_str(&number);
    }
}

/// A JSON string literal, escaped as serde_json escapes it.
fn write_json_str(line: &mut String, value: &str) {
    line.push('"');
    escape_into(line, value);
    line.push('"');
}

/// Escapes what `Debug` output writes, piece by piece.
struct Escaping<'a>(&'a mut String);

impl Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

fn escape_into(line: &mut String, value: &str) {
    let mut start = 0;
    for (i, byte) in value.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        line.push_str(&value[start..i]);
        if escaped.is_empty() {
            let _ = write!(line, "\\u{byte:04x}");
        } else {
            line.push_str(escaped);
        }
        start = i + 1;
    }
    line.push_str(&value[start..]);
}

/// `2026-11-29T12:14:10.173289Z`: UTC to the microsecond, as tracing-subscriber writes it.
fn write_timestamp(line: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    let _ = write!(
        line,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_micros()
    );
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The lines that `emit` logs through a JSON subscriber, by hand or stock, with the
    /// timestamp's value (the one part that differs between two runs) blanked.
    fn lines(by_hand: bool, emit: impl Fn()) -> Vec<String> {
        let captured = Captured::default();
        let writer = captured.clone();
        let builder = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone());
        if by_hand {
            tracing::subscriber::with_default(builder.event_format(FastJson::new()).finish(), emit);
        } else {
            tracing::subscriber::with_default(builder.finish(), emit);
        }
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| {
                let prefix = "{\"timestamp\":\"";
                assert!(line.starts_with(prefix), "{line}");
                let end = prefix.len() + line[prefix.len()..].find('"').unwrap();
                assert!(line[..end].ends_with('Z'), "{line}");
                format!("{prefix}{}", &line[end..])
            })
            .collect()
    }

    fn emit() {
        let path = "/a \"quoted\"\\ path\n\u{1}é";
        let key_id: Option<&str> = Some("k1");
        let missing: Option<u64> = None;
        tracing::info!(
            trace_id = %"t-1",
            method = %"GET",
            path = %path,
            status = 200u16,
            latency_ms = 3u64,
            key_id,
            suppressed_before = missing,
            "request"
        );
        tracing::warn!(delta = -4i64, ratio = 0.5f64, ok = true, error = ?"e\"x", "a {} message", 2);
        let span = tracing::info_span!("request", trace_id = %"t-2");
        span.in_scope(|| tracing::error!(detail = "inside a span"));
    }

    #[test]
    fn lines_by_hand_equal_the_stock_formatters_byte_for_byte() {
        let by_hand = lines(true, emit);
        let stock = lines(false, emit);
        assert_eq!(by_hand.len(), 3);
        assert_eq!(by_hand, stock);
        assert!(by_hand[0].contains("\"status\":200,\"latency_ms\":3,"));
    }

    #[test]
    fn timestamps_match_tracing_subscribers() {
        let mut line = String::new();
        for secs in [
            0u64,
            951_782_400,
            1_709_164_800,
            1_798_675_200,
            4_102_444_799,
        ] {
            line.clear();
            let at = UNIX_EPOCH + Duration::new(secs, 123_456_789);
            write_timestamp(&mut line, at);
            let expected = chrono::DateTime::<chrono::Utc>::from(at)
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(line, expected);
        }
    }
}
