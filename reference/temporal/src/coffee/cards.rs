//! A simulated card processor with test tokens in the style of real processors' test modes, so a
//! demo or a test picks a behaviour by the card it uses, and nothing is random.

/// Why a charge did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// The issuer said no. Retrying will not change that.
    #[error("card declined: {0}")]
    Declined(String),
    /// The processor could not be reached or timed out. A retry may succeed.
    #[error("card processor unavailable: {0}")]
    Unavailable(String),
}

/// Always approved.
pub const CARD_OK: &str = "tok_visa";
/// Always declined.
pub const CARD_DECLINED: &str = "tok_chargeDeclined";
/// Unavailable on the first [`FLAKY_FAILURES`] attempts, approved after.
pub const CARD_FLAKY: &str = "tok_flaky";
/// The processor never answers for this card.
pub const CARD_UNREACHABLE: &str = "tok_unreachable";
/// How many attempts [`CARD_FLAKY`] fails before it is approved.
pub const FLAKY_FAILURES: u32 = 2;

// ANCHOR: authorize
/// Asks the processor to approve `amount_cents` on `card`. `attempt` (1-based, from
/// Temporal's activity info) is what makes `tok_flaky` recover: the processor "comes
/// back" on attempt 3.
pub fn authorize(card: &str, amount_cents: i64, attempt: u32) -> Result<(), CardError> {
    match card {
        CARD_DECLINED => Err(CardError::Declined("insufficient funds".into())),
        CARD_UNREACHABLE => Err(CardError::Unavailable("gateway timeout".into())),
        CARD_FLAKY if attempt <= FLAKY_FAILURES => {
            Err(CardError::Unavailable(format!("gateway timeout on attempt {attempt}")))
        }
        _ if amount_cents <= 0 => Err(CardError::Declined("amount must be positive".into())),
        _ => Ok(()),
    }
}
// ANCHOR_END: authorize

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_behave_as_documented() {
        assert_eq!(authorize(CARD_OK, 400, 1), Ok(()));
        assert!(matches!(authorize(CARD_DECLINED, 400, 1), Err(CardError::Declined(_))));
        assert!(matches!(authorize(CARD_DECLINED, 400, 9), Err(CardError::Declined(_))));
        assert!(matches!(authorize(CARD_FLAKY, 400, 1), Err(CardError::Unavailable(_))));
        assert!(matches!(authorize(CARD_FLAKY, 400, 2), Err(CardError::Unavailable(_))));
        assert_eq!(authorize(CARD_FLAKY, 400, 3), Ok(()));
        assert!(matches!(authorize(CARD_UNREACHABLE, 400, 99), Err(CardError::Unavailable(_))));
        assert!(matches!(authorize(CARD_OK, 0, 1), Err(CardError::Declined(_))));
    }
}
