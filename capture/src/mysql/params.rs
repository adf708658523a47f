//! Binary-protocol parameters of a COM_STMT_EXECUTE, decoded lazily.
//!
//! The decoder checks the parameter block once (every value is walked with the same checks as a
//! full decode) and keeps only its layout in the execute payload: where the null bitmap and the
//! values start, and the parameters' types (sent with the execute, or remembered by the
//! statement). Values are built only when a consumer asks, from the record's `raw` payload
//! ([`Params::decode`]), so an execute costs no allocation per parameter on the decode path.
//! Parameters built by hand (tests, other sources, the dist wire) are kept decoded.
//! This module does not parse the rest of the command (see [`super::command`]).

use std::borrow::Cow;

use crate::event::{Param, Value};
use crate::mysql::command::CommandError;
use crate::mysql::consts::caps::QUERY_ATTRIBUTES as CLIENT_QUERY_ATTRIBUTES;
use crate::mysql::value::{read_value, types, Reader, WireError};

/// Types kept in place up to this many parameters (no allocation).
const INLINE: usize = 8;

/// The parameters of one COM_STMT_EXECUTE, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Params(Repr);

#[derive(Clone, Debug, PartialEq)]
enum Repr {
    /// Values built already (by hand, from long data, from another process).
    Decoded(Vec<Param>),
    /// Layout in the execute payload; values decoded on demand.
    Raw {
        n: u16,
        /// Offset of the null bitmap in the payload (command byte included).
        bitmap_at: u32,
        /// Offset of the first value.
        values_at: u32,
        types: Types,
    },
}

/// (type, unsigned) of each parameter.
#[derive(Clone, Debug, PartialEq)]
enum Types {
    Inline([(u8, bool); INLINE]),
    Heap(Box<[(u8, bool)]>),
}

impl Types {
    fn collect(
        n: usize,
        mut next: impl FnMut() -> Result<(u8, bool), CommandError>,
    ) -> Result<Self, CommandError> {
        if n <= INLINE {
            let mut a = [(0u8, false); INLINE];
            for slot in a.iter_mut().take(n) {
                *slot = next()?;
            }
            Ok(Types::Inline(a))
        } else {
            (0..n)
                .map(|_| next())
                .collect::<Result<Box<[_]>, _>>()
                .map(Types::Heap)
        }
    }

    fn get(&self, n: usize) -> &[(u8, bool)] {
        match self {
            Types::Inline(a) => &a[..n.min(INLINE)],
            Types::Heap(b) => b,
        }
    }
}

impl Default for Params {
    fn default() -> Self {
        Params(Repr::Decoded(Vec::new()))
    }
}

impl From<Vec<Param>> for Params {
    fn from(v: Vec<Param>) -> Self {
        Params(Repr::Decoded(v))
    }
}

impl Params {
    /// Number of parameters.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Decoded(v) => v.len(),
            Repr::Raw { n, .. } => usize::from(*n),
        }
    }

    /// No parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parameters' values. `raw` is the record's payload (`CommandRecord::raw`) the execute
    /// was parsed from; parameters built by hand ignore it. Given another payload, decoding stops
    /// at the first value that does not parse (fewer parameters, never a panic).
    pub fn decode(&self, raw: &[u8]) -> Cow<'_, [Param]> {
        match &self.0 {
            Repr::Decoded(v) => Cow::Borrowed(v),
            Repr::Raw {
                n,
                bitmap_at,
                values_at,
                types,
            } => {
                let n = usize::from(*n);
                let at = |o: u32| usize::try_from(o).unwrap_or(usize::MAX);
                let bitmap = raw
                    .get(at(*bitmap_at)..)
                    .and_then(|b| b.get(..n.div_ceil(8)))
                    .unwrap_or(&[]);
                let mut r = Reader::new(raw.get(at(*values_at)..).unwrap_or(&[]));
                let mut out = Vec::with_capacity(n);
                // Errors only when `raw` is not the payload this was parsed from.
                let _ = walk(bitmap, types.get(n), &mut r, &[], Some(&mut out));
                Cow::Owned(out)
            }
        }
    }

    /// Copy the parameters' (type, unsigned) into `into` (the statement's remembered types).
    pub(crate) fn remember_types(&self, into: &mut Vec<(u8, bool)>) {
        into.clear();
        match &self.0 {
            Repr::Decoded(v) => into.extend(v.iter().map(|p| (p.column_type, p.unsigned))),
            Repr::Raw { n, types, .. } => into.extend_from_slice(types.get(usize::from(*n))),
        }
    }
}

/// Walk the values after the types: check each (the same checks as a decode) and, with `out`,
/// build them. Parameters with long data take it instead of reading the payload.
fn walk(
    bitmap: &[u8],
    types: &[(u8, bool)],
    r: &mut Reader<'_>,
    long: &[(u16, Vec<u8>)],
    mut out: Option<&mut Vec<Param>>,
) -> Result<(), WireError> {
    for (i, &(ty, unsigned)) in types.iter().enumerate() {
        let null = bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
        let value = if null || ty == types::NULL {
            Value::Null
        } else if let Some((_, d)) = long.iter().find(|(p, _)| usize::from(*p) == i) {
            Value::Bytes(d.as_slice().into())
        } else if out.is_none() && is_bytes(ty) {
            r.lenenc_bytes("string value")?;
            continue;
        } else {
            read_value(r, ty, unsigned)?
        };
        if let Some(out) = out.as_deref_mut() {
            out.push(Param {
                column_type: ty,
                unsigned,
                value,
            });
        }
    }
    Ok(())
}

fn is_bytes(ty: u8) -> bool {
    use types::*;
    matches!(
        ty,
        DECIMAL
            | NEWDECIMAL
            | VARCHAR
            | BIT
            | JSON
            | ENUM
            | SET
            | TINY_BLOB
            | MEDIUM_BLOB
            | LONG_BLOB
            | BLOB
            | VAR_STRING
            | STRING
            | GEOMETRY
    )
}

/// Check the parameter block of an execute (`r` over `payload`, after the iteration count and
/// the parameter count, if any) for exactly `n` parameters and keep its layout; `Ok(None)` if
/// `known` types are needed but absent. Also says whether the execute sent its types.
pub(crate) fn parse(
    payload: &[u8],
    r: &mut Reader<'_>,
    n: usize,
    caps: u32,
    known: &[(u8, bool)],
    long: &[(u16, Vec<u8>)],
) -> Result<Option<(Params, bool)>, CommandError> {
    if n == 0 {
        return Ok(Some((Params::default(), false)));
    }
    let offset = |r: &Reader<'_>| u32::try_from(payload.len() - r.remaining()).unwrap_or(u32::MAX);
    let bitmap_at = offset(r);
    let bitmap = r.take(n.div_ceil(8), "COM_STMT_EXECUTE null bitmap")?;
    let bound = r.u8("COM_STMT_EXECUTE new params bound flag")?;
    let names = caps & CLIENT_QUERY_ATTRIBUTES != 0;
    let types = if bound == 1 {
        Types::collect(n, || {
            let ty = r.u8("param type")?;
            let flags = r.u8("param flags")?;
            if names {
                r.lenenc_bytes("param name")?;
            }
            Ok((ty, flags & 0x80 != 0))
        })?
    } else if bound == 0 {
        if known.len() != n {
            return Ok(None);
        }
        let mut k = known.iter().copied();
        Types::collect(n, || Ok(k.next().unwrap_or_default()))?
    } else {
        return Err(CommandError::Invalid("new params bound flag"));
    };
    let values_at = offset(r);
    let n16 = u16::try_from(n).map_err(|_| CommandError::Invalid("parameter count"))?;
    if long.is_empty() {
        walk(bitmap, types.get(n), r, &[], None)?;
        let raw = Repr::Raw {
            n: n16,
            bitmap_at,
            values_at,
            types,
        };
        return Ok(Some((Params(raw), bound == 1)));
    }
    let mut out = Vec::with_capacity(n);
    walk(bitmap, types.get(n), r, long, Some(&mut out))?;
    Ok(Some((Params(Repr::Decoded(out)), bound == 1)))
}
