//! Validated identifiers. A value of these types is always legal: construction checks
//! length and alphabet, and deserialisation goes through the same check, so a decoded
//! record can never carry an id the rest of the system would choke on.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must be 1 to {max} characters, got {len}")]
    Length { kind: &'static str, max: usize, len: usize },
    #[error("{kind} may only contain letters, digits and . _ : - (got {found:?})")]
    Alphabet { kind: &'static str, found: char },
}

/// The regular expression (ECMA, for API schemas) of what [`check`] accepts.
fn pattern(max: usize, extra: &[char]) -> String {
    let extra: String = extra.iter().collect();
    format!("^[A-Za-z0-9._:{extra}-]{{1,{max}}}$")
}

fn check(kind: &'static str, max: usize, s: &str, extra: &[char]) -> Result<(), IdError> {
    if s.is_empty() || s.len() > max {
        return Err(IdError::Length { kind, max, len: s.len() });
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._:-".contains(*c) || extra.contains(c)))
    {
        Some(found) => Err(IdError::Alphabet { kind, found }),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal, $extra:expr) => {
        $(#[$doc])*
        /// Cheap to clone: the text is shared.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn new(s: impl AsRef<str>) -> Result<Self, IdError> {
                let s = s.as_ref();
                check($kind, $max, s, $extra)?;
                Ok(Self(Arc::from(s)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The legal values as a regular expression (for API schemas).
            pub fn pattern() -> String {
                pattern($max, $extra)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// A stock-keeping unit. The commands topic is keyed by it, so all of one SKU's
    /// stock and reservations live in one partition with one writer.
    Sku, "sku", 64, &[]
);
id_type!(
    /// A warehouse holding stock of some SKUs.
    WarehouseId, "warehouse", 32, &[]
);
id_type!(
    /// The tenant a credential belongs to; command ids and reservations are scoped to it.
    TenantId, "tenant", 64, &[]
);
id_type!(
    /// The client-chosen idempotency key of a command, reused on every retry.
    CommandId, "command id", 128, &['/', '=', '+']
);

/// A reservation: the SKU it holds (which routes every later command on it to the
/// right partition) and the log offset of the reserve command that created it (unique
/// within the SKU's partition). Written `SKU~OFFSET`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReservationId {
    pub sku: Sku,
    pub seq: u64,
}

impl ReservationId {
    pub fn new(sku: Sku, seq: u64) -> Self {
        Self { sku, seq }
    }

    /// The legal values as a regular expression (for API schemas; 19 digits always fit).
    pub fn pattern() -> String {
        format!("{}~[0-9]{{1,19}}$", Sku::pattern().trim_end_matches('$'))
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}~{}", self.sku, self.seq)
    }
}

impl fmt::Debug for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReservationId({self})")
    }
}

/// Why a reservation id did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservationIdError {
    #[error("reservation id must look like SKU~NUMBER")]
    Shape,
    #[error(transparent)]
    Sku(#[from] IdError),
}

impl std::str::FromStr for ReservationId {
    type Err = ReservationIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (sku, seq) = s.rsplit_once('~').ok_or(ReservationIdError::Shape)?;
        let seq = seq.parse().map_err(|_| ReservationIdError::Shape)?;
        Ok(Self { sku: Sku::new(sku)?, seq })
    }
}

impl Serialize for ReservationId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ReservationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_check_length_and_alphabet() {
        assert!(Sku::new("SKU-1.a:b_c").is_ok());
        assert_eq!(Sku::new(""), Err(IdError::Length { kind: "sku", max: 64, len: 0 }));
        assert_eq!(Sku::new("a b"), Err(IdError::Alphabet { kind: "sku", found: ' ' }));
        assert!(Sku::new("x".repeat(65)).is_err());
        assert!(Sku::new("a~b").is_err(), "~ separates the reservation id");
        assert!(CommandId::new("b64+/=").is_ok());
    }

    /// The patterns API schemas carry say what `new` says, on both sides of each rule.
    #[test]
    fn patterns_state_the_checks() {
        assert_eq!(Sku::pattern(), "^[A-Za-z0-9._:-]{1,64}$");
        assert_eq!(WarehouseId::pattern(), "^[A-Za-z0-9._:-]{1,32}$");
        assert_eq!(CommandId::pattern(), "^[A-Za-z0-9._:/=+-]{1,128}$");
        assert_eq!(ReservationId::pattern(), "^[A-Za-z0-9._:-]{1,64}~[0-9]{1,19}$");
        assert!(
            CommandId::new("x".repeat(128)).is_ok() && CommandId::new("x".repeat(129)).is_err()
        );
        assert!(
            WarehouseId::new("w".repeat(32)).is_ok() && WarehouseId::new("w".repeat(33)).is_err()
        );
        assert!(format!("a~{}", "9".repeat(19)).parse::<ReservationId>().is_ok());
    }

    #[test]
    fn reservation_id_round_trips_through_text_and_json() {
        let id = ReservationId::new(Sku::new("sku-1").unwrap(), 42);
        assert_eq!(id.to_string(), "sku-1~42");
        assert_eq!("sku-1~42".parse::<ReservationId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"sku-1~42\"");
        assert_eq!(serde_json::from_str::<ReservationId>(&json).unwrap(), id);
        assert!("sku-1".parse::<ReservationId>().is_err());
        assert!("~1".parse::<ReservationId>().is_err());
    }

    #[test]
    fn deserialising_an_invalid_id_fails() {
        assert!(serde_json::from_str::<Sku>("\"bad sku\"").is_err());
    }
}
