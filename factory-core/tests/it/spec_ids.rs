use factory_core::spec::{SpecId, slugify};
use proptest::prelude::*;

#[test]
fn spec_id_formats_and_parses() {
    let id = SpecId::new(1, "Add /healthz endpoint!");
    assert_eq!(id.to_string(), "001-add-healthz-endpoint");
    assert_eq!("001-add-healthz-endpoint".parse::<SpecId>(), Ok(id.clone()));
    assert_eq!(id.branch(), "factory/001-add-healthz-endpoint");
    assert_eq!(SpecId::new(12, "???").to_string(), "012-task");
    for bad in [
        "1-x", "001", "001-", "abc-x", "001-X", "001--x", "0001-x", "001-x-",
    ] {
        assert!(bad.parse::<SpecId>().is_err(), "{bad} should be refused");
    }
    assert_eq!(SpecId::new(1234, "big").to_string(), "1234-big");
}

proptest! {
    #[test]
    fn spec_ids_round_trip(n in 0u32..100_000, title in ".{0,80}") {
        let id = SpecId::new(n, &title);
        let text = id.to_string();
        prop_assert_eq!(text.parse::<SpecId>(), Ok(id.clone()));
        prop_assert!(id.slug().len() <= 40);
        prop_assert_eq!(slugify(id.slug()), id.slug());
    }

    #[test]
    fn order_is_numeric_and_matches_string_order_below_1000(
        a in 0u32..1000, b in 0u32..1000, ta in "[a-z]{1,10}", tb in "[a-z]{1,10}"
    ) {
        let (x, y) = (SpecId::new(a, &ta), SpecId::new(b, &tb));
        prop_assert_eq!(x.cmp(&y), x.to_string().cmp(&y.to_string()));
        if a != b {
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }
    }

    #[test]
    fn order_is_numeric_for_any_number(a in 0u32..100_000, b in 0u32..100_000) {
        prop_assume!(a != b);
        prop_assert_eq!(SpecId::new(a, "x").cmp(&SpecId::new(b, "x")), a.cmp(&b));
    }
}
