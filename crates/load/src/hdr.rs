//! Latency histograms in a JSON report: HdrHistogram's V2 compressed form
//! (deflate), in base64, the form the HdrHistogram tools of every language
//! read (e.g. `HistogramLogProcessor`, hdrhistogram.github.io's plotter), so
//! reports of several generators can be merged without losing precision.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serializer};

/// The histogram as base64 of its V2 compressed form.
pub fn encode(h: &Histogram<u64>) -> Result<String, String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes).map_err(|e| format!("cannot encode a histogram: {e:?}"))?;
    Ok(STANDARD.encode(bytes))
}

/// A histogram from [`encode`]'s form.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD.decode(text.trim()).map_err(|e| format!("a histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("a histogram is not in HdrHistogram's V2 form: {e:?}"))
}

/// For `#[serde(with = "hdr")]`.
pub fn serialize<S: Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode(h).map_err(serde::ser::Error::custom)?)
}

/// For `#[serde(with = "hdr")]`.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
    let text = String::deserialize(d)?;
    decode(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn a_histogram_survives_the_round_trip() {
        let mut h = new_histogram();
        for v in [1, 7, 1000, 123_456, 3_600_000_000] {
            h.record_n(v, v % 5 + 1).unwrap();
        }
        let back = decode(&encode(&h).unwrap()).unwrap();
        assert_eq!(back, h);
        assert!(decode("not base64!").unwrap_err().contains("not base64"));
        assert!(decode("aGVsbG8=").unwrap_err().contains("V2 form"));
    }
}
