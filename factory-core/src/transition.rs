use std::fmt;

/// A state machine refused an event in its current state.
///
/// Stores return this instead of writing, so an illegal state never reaches disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal {machine} transition: event `{event}` is not allowed in state `{from}`")]
pub struct IllegalTransition {
    /// Which machine refused ("epic", "task", "agent").
    pub machine: &'static str,
    /// The state the machine was in.
    pub from: String,
    /// The event that was refused.
    pub event: String,
}

impl IllegalTransition {
    pub(crate) fn new(
        machine: &'static str,
        from: impl fmt::Display,
        event: impl fmt::Display,
    ) -> Self {
        Self {
            machine,
            from: from.to_string(),
            event: event.to_string(),
        }
    }
}

/// Implements `as_str`, `Display` and `FromStr` for a unit-only enum with snake_case names, so
/// stores and the CLI share one spelling of every state.
macro_rules! snake_case_enum {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stable snake_case name used in storage, JSON and the CLI.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(format!(
                        "unknown {} `{other}` (expected one of: {})",
                        stringify!($ty),
                        [$($name),+].join(", ")
                    )),
                }
            }
        }
    };
}
pub(crate) use snake_case_enum;
