//! Closed sets of named values (modes, rules, styles): one spelling shared by the command line,
//! the config files, JSON and the workbench.
//!
//! [`choice!`](crate::util::choice::choice) gives an enum `ALL`, `name()`, `Display` and a
//! case-insensitive `FromStr` whose error lists the names. The command line turns the same list
//! into its choices, so a name is spelled in exactly one place.

/// Implement the named-value surface for an enum declared beside the macro call.
macro_rules! choice {
    ($name:ident, $what:literal { $($var:ident => $s:literal),+ $(,)? }) => {
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The name used on the command line, in files and in JSON.
            pub fn name(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = anyhow::Error;
            fn from_str(s: &str) -> anyhow::Result<Self> {
                let want = s.trim().to_ascii_lowercase();
                $name::ALL.iter().copied().find(|v| v.name() == want).ok_or_else(|| {
                    let names: Vec<&str> = $name::ALL.iter().map(|v| v.name()).collect();
                    anyhow::anyhow!("{} {s:?} is unknown; expected one of: {}", $what, names.join(", "))
                })
            }
        }
    };
}

pub(crate) use choice;

#[cfg(test)]
mod tests {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Colour {
        Red,
        DarkBlue,
    }
    super::choice!(Colour, "colour" { Red => "red", DarkBlue => "dark-blue" });

    #[test]
    fn names_round_trip_and_errors_list_them() {
        for c in Colour::ALL {
            assert_eq!(c.name().parse::<Colour>().unwrap(), *c);
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!(" Dark-Blue ".parse::<Colour>().unwrap(), Colour::DarkBlue);
        let e = "green".parse::<Colour>().unwrap_err().to_string();
        assert!(
            e.contains("colour \"green\" is unknown") && e.contains("red, dark-blue"),
            "{e}"
        );
    }
}
