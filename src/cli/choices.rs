//! The core's named choices as clap value enums, so `--help` lists them and a bad value is
//! refused with the list. The names themselves are the core's ([`crate::util::choice`]).

use clap::ValueEnum;
use clap::builder::PossibleValue;

macro_rules! value_enum {
    ($($ty:ty),+ $(,)?) => {$(
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                <$ty>::ALL
            }
            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(PossibleValue::new(self.name()))
            }
        }
    )+};
}

value_enum!(
    crate::sae::intervene::Mode,
    crate::sae::intervene::Direction,
    crate::sae::intervene::Phase,
    crate::sae::intervene::TokenScope,
    crate::generate::StrengthUnit,
    crate::score::Method,
    crate::score::fuzzing::FuzzType,
    crate::session::encode::TokenSelection,
    crate::sae::evaluate::MapGrid,
    crate::sae::evaluate::ImageRank,
    crate::heatmap::Upsample,
    crate::explain::select::EvidenceStyle,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::intervene::Mode;

    #[test]
    fn clap_sees_the_core_names() {
        let names: Vec<String> = Mode::value_variants()
            .iter()
            .filter_map(|m| m.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        assert_eq!(names, ["replace", "clamp", "add"]);
        assert_eq!(Mode::from_str("CLAMP", true).unwrap(), Mode::Clamp);
    }
}
