//! Opening data files, transparently gunzipping them.
//!
//! Compression is detected by the gzip magic bytes `1f 8b`, never by the file
//! name: `x.csv.gz` holding plain text and `x.csv` holding gzip both work.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use super::error::DataError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const BUFFER: usize = 1 << 16;

/// Opens `path` for streaming reads, decompressing it if it is gzip.
pub(crate) fn open(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let file = File::open(path).map_err(|err| DataError::io(path, err))?;
    let mut reader = BufReader::with_capacity(BUFFER, file);
    let head = reader.fill_buf().map_err(|err| DataError::io(path, err))?;
    if head.starts_with(&GZIP_MAGIC) {
        Ok(Box::new(MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

/// Reads all of `path`, decompressed.
pub(crate) fn read_all(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|err| DataError::io(path, err))?;
    decompress(path, bytes)
}

/// Gunzips `bytes` if they start with the gzip magic; `path` is for errors.
pub(crate) fn decompress(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, DataError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4));
    MultiGzDecoder::new(bytes.as_slice())
        .read_to_end(&mut out)
        .map_err(|err| DataError::Io {
            path: path.to_path_buf(),
            source: err,
        })?;
    Ok(out)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub(crate) fn read_up_to(
    path: &Path,
    reader: &mut dyn Read,
    buf: &mut [u8],
) -> Result<usize, DataError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => {
                return Err(DataError::Io {
                    path: path.to_path_buf(),
                    source: err,
                })
            }
        }
    }
    Ok(filled)
}
