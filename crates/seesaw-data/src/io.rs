//! Reading and writing JSON documents, plain or gzip-compressed.
//!
//! Reading takes the whole file into memory once and parses from the slice, which is several
//! times faster than parsing from a reader. Errors carry the JSON path: the fast parse runs
//! without path tracking, and only a failed document is parsed again with it.

use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use rayon::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{DataError, JsonPath, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The bytes of `file`, decompressed when they are gzip (by content, not by name).
pub fn read_bytes(file: &Path) -> Result<Vec<u8>> {
    let raw = fs::read(file).map_err(|e| DataError::io(file, "cannot read", e))?;
    if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::with_capacity(raw.len() * 6);
        MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::Gzip {
                file: file.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses `bytes` (the content of `file`) as a `T`, with errors that name the JSON path.
pub fn parse_json<T: DeserializeOwned>(file: &Path, bytes: &[u8]) -> Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DataError::Empty {
            file: file.to_path_buf(),
        });
    }
    match serde_json::from_slice::<T>(bytes) {
        Ok(v) => Ok(v),
        Err(fast_err) => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let tracked: std::result::Result<T, _> = serde_path_to_error::deserialize(&mut de);
            let (path, err) = match tracked {
                Err(e) => {
                    let path = JsonPath::from_rendered(e.path().to_string());
                    (path, e.into_inner())
                }
                // Cannot happen for a deterministic parser; report the first error unlocated.
                Ok(_) => (JsonPath::root(), fast_err),
            };
            Err(json_error(file, bytes, path, &err))
        }
    }
}

/// Logs (at debug level) where loading `file` spent its time: reading, parsing, checking.
pub(crate) fn log_load_times(
    file: &Path,
    t0: std::time::Instant,
    t_read: std::time::Duration,
    t_parse: std::time::Duration,
) {
    tracing::debug!(
        "{}: read {:.2} s, parse {:.2} s, validate {:.2} s",
        file.display(),
        t_read.as_secs_f64(),
        (t_parse - t_read).as_secs_f64(),
        (t0.elapsed() - t_parse).as_secs_f64()
    );
}

/// Below this size a result array is parsed on one thread: splitting would not pay.
const PARALLEL_PARSE_MIN_BYTES: usize = 8 << 20;

/// Parses a top-level JSON array of `T` (`file`'s content) on every core, with the errors of
/// [`parse_json`].
///
/// The array is cut into chunks at element boundaries (`},` then `{`), each parsed on its own.
/// A cut that is not a real boundary (inside a string or a nested array) leaves a chunk that is
/// not valid JSON; any chunk that fails sends the whole document to the one-thread parse,
/// which also produces the located error message.
pub fn parse_json_array<T: DeserializeOwned + Send>(file: &Path, bytes: &[u8]) -> Result<Vec<T>> {
    parse_json_array_above(file, bytes, PARALLEL_PARSE_MIN_BYTES)
}

pub(crate) fn parse_json_array_above<T: DeserializeOwned + Send>(
    file: &Path,
    bytes: &[u8],
    min_bytes: usize,
) -> Result<Vec<T>> {
    let threads = rayon::current_num_threads();
    if bytes.len() < min_bytes || threads < 2 {
        return parse_json(file, bytes);
    }
    let Some(chunks) = split_array(bytes, threads * 4) else {
        return parse_json(file, bytes);
    };
    let parsed: Option<Vec<Vec<T>>> = chunks
        .par_iter()
        .map(|chunk| {
            let mut buf = Vec::with_capacity(chunk.len() + 2);
            buf.push(b'[');
            buf.extend_from_slice(chunk);
            buf.push(b']');
            serde_json::from_slice::<Vec<T>>(&buf).ok()
        })
        .collect();
    match parsed {
        Some(parts) => {
            let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
            for p in parts {
                out.extend(p);
            }
            Ok(out)
        }
        None => parse_json(file, bytes),
    }
}

/// The elements of a top-level array cut into about `pieces` runs of whole elements (each run
/// without its trailing comma), or `None` when the document is not a plain non-empty array.
fn split_array(bytes: &[u8], pieces: usize) -> Option<Vec<&[u8]>> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if bytes[start] != b'[' || bytes[end] != b']' || end <= start + 1 {
        return None;
    }
    let inner = &bytes[start + 1..end];
    let mut cuts = vec![0usize];
    for i in 1..pieces {
        let guess = (i * inner.len() / pieces).max(*cuts.last()?);
        let mut from = guess;
        while let Some(off) = find(&inner[from..], b"},") {
            let comma = from + off + 1;
            let next = inner[comma + 1..]
                .iter()
                .position(|b| !b.is_ascii_whitespace());
            if let Some(n) = next
                && inner[comma + 1 + n] == b'{'
            {
                cuts.push(comma + 1);
                break;
            }
            from = comma;
        }
    }
    cuts.dedup();
    let mut chunks = Vec::with_capacity(cuts.len());
    for (k, &a) in cuts.iter().enumerate() {
        let b = cuts.get(k + 1).map_or(inner.len(), |&c| c - 1); // drop the comma
        chunks.push(&inner[a..b]);
    }
    Some(chunks)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads and parses `file` in one step.
pub fn read_json<T: DeserializeOwned>(file: &Path) -> Result<T> {
    let bytes = read_bytes(file)?;
    parse_json(file, &bytes)
}

fn json_error(file: &Path, bytes: &[u8], path: JsonPath, err: &serde_json::Error) -> DataError {
    let (line, column) = (err.line(), err.column());
    let mut message = strip_position(&err.to_string());
    match err.classify() {
        serde_json::error::Category::Eof => {
            message = format!("the file ends too early (truncated?): {message}");
        }
        serde_json::error::Category::Syntax => {
            let at = byte_offset(bytes, line, column);
            let rest = &bytes[at.min(bytes.len())..];
            let rest = rest.get(..rest.len().min(9)).unwrap_or_default();
            let token = String::from_utf8_lossy(rest);
            if ["NaN", "Infinity", "-Infinity"]
                .iter()
                .any(|t| token.starts_with(t))
            {
                message = "NaN and Infinity are not numbers in JSON (was the file written by \
                           Python's json with allow_nan?)"
                    .to_string();
            } else if line == 1 && column <= 1 {
                message = format!("not a JSON document: {message}");
            }
        }
        _ => {}
    }
    DataError::Json {
        file: file.to_path_buf(),
        path,
        message,
        line,
        column,
    }
}

/// serde_json appends " at line L column C"; we print the position ourselves.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Byte offset of a 1-based (line, column) position; serde_json's column points at the
/// last byte read, so the offending token starts one byte before it.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(p) => start += p + 1,
            None => return bytes.len(),
        }
    }
    start + column.saturating_sub(1)
}

/// Writes `value` as JSON to `file`, gzip-compressed when the name ends in `.gz`.
///
/// The document goes to a temporary file beside the target, which is then renamed over it,
/// so a crash never leaves a half-written file where a good one was.
pub fn write_json<T: Serialize + ?Sized>(file: &Path, value: &T) -> Result<()> {
    let gz = file.extension().is_some_and(|e| e == "gz");
    write_atomic(file, |w| {
        if gz {
            let mut enc = GzEncoder::new(w, Compression::new(6));
            serde_json::to_writer(&mut enc, value).map_err(std::io::Error::other)?;
            enc.finish()?;
        } else {
            serde_json::to_writer(&mut *w, value).map_err(std::io::Error::other)?;
        }
        Ok(())
    })
}

/// Writes a file through a temporary sibling and a rename.
pub fn write_atomic(
    file: &Path,
    fill: impl FnOnce(&mut BufWriter<fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temp_sibling(file);
    let result = (|| {
        let f = fs::File::create(&tmp)?;
        let mut w = BufWriter::new(f);
        fill(&mut w)?;
        w.flush()?;
        w.get_ref().sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(DataError::io(file, "cannot write", e));
    }
    fs::rename(&tmp, file).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        DataError::io(file, "cannot rename the temporary file onto", e)
    })
}

fn temp_sibling(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_string());
    file.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trip_and_detection_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("a.json.gz");
        write_json(&gz, &vec![1, 2, 3]).unwrap();
        let raw = fs::read(&gz).unwrap();
        assert_eq!(&raw[..2], &GZIP_MAGIC);
        let back: Vec<i32> = read_json(&gz).unwrap();
        assert_eq!(back, vec![1, 2, 3]);
        // Same bytes under a plain name are still recognised as gzip.
        let plain = dir.path().join("b.json");
        fs::write(&plain, raw).unwrap();
        let back: Vec<i32> = read_json(&plain).unwrap();
        assert_eq!(back, vec![1, 2, 3]);
    }

    #[test]
    fn no_temporary_file_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.json");
        write_json(&f, &"hello").unwrap();
        write_json(&f, &"again").unwrap();
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        let back: String = read_json(&f).unwrap();
        assert_eq!(back, "again");
    }

    #[test]
    fn parallel_array_parse_equals_the_plain_one_or_falls_back() {
        let items: Vec<serde_json::Value> = (0..500)
            .map(|i| {
                serde_json::json!({"id": i, "s": format!("x}},{{y{i}"), "nested": [{"a": i}, {"b": [i, i]}]})
            })
            .collect();
        let compact = serde_json::to_vec(&items).unwrap();
        let pretty = serde_json::to_vec_pretty(&items).unwrap();
        for bytes in [compact, pretty] {
            let back: Vec<serde_json::Value> =
                parse_json_array_above(Path::new("a.json"), &bytes, 0).unwrap();
            assert_eq!(back, items);
        }
        // A bad element still gets its located message through the fallback.
        let bad = b"[{\"id\": 1}, {\"id\": \"two\"}]";
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct R {
            id: u64,
        }
        let err = parse_json_array_above::<R>(Path::new("r.json"), bad, 0).unwrap_err();
        assert!(
            err.to_string().starts_with("r.json: [1].id: invalid type"),
            "{err}"
        );
        let empty: Vec<R> = parse_json_array_above(Path::new("e.json"), b" [ ] ", 0).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn nan_gets_a_helpful_message_with_its_path() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct R {
            score: f64,
        }
        let err =
            parse_json::<Vec<R>>(Path::new("r.json"), b"[{\"score\": 0.5}, {\"score\": NaN}]")
                .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("r.json: [1].score: NaN and Infinity"),
            "{msg}"
        );
    }
}
