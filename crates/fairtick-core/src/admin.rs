//! What an admin may change about a user, and what nobody may: roles are granted or removed
//! only by a superadmin, the last active superadmin stays, and per-user limits only restrict.
//! There is no rule here, or anywhere, about anyone's results.

use crate::account::{Role, UserStatus};
use crate::money::Money;

/// A requested change to one user; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserChange {
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    /// `Some(None)` lifts the per-user stake limit.
    pub max_stake: Option<Option<Money>>,
    pub trading_suspended: Option<bool>,
}

/// The target user as it is before the change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub role: Role,
    pub status: UserStatus,
    pub is_self: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("only a superadmin may grant or remove the admin or superadmin role")]
    RoleNeedsSuperadmin,
    #[error("only a superadmin may change another admin's account")]
    AdminNeedsSuperadmin,
    #[error("the last active superadmin cannot be demoted or suspended")]
    LastSuperadmin,
    #[error("admins cannot suspend or demote themselves")]
    NotYourself,
    #[error("only a superadmin may change an admin's own stake limit or trading suspension")]
    OwnLimits,
    /// The actor's own account is no longer an active admin's (changed while the request ran).
    #[error("only an active admin may change accounts")]
    NotAnAdmin,
    #[error("maxStake must be positive; send null to lift the limit")]
    InvalidMaxStake,
    #[error("nothing to change")]
    Empty,
}

/// Checks a change by `actor` to `target`, given how many active superadmins exist.
pub fn check_user_change(
    actor: Role,
    target: Target,
    change: &UserChange,
    active_superadmins: i64,
) -> Result<(), Refusal> {
    if *change == UserChange::default() {
        return Err(Refusal::Empty);
    }
    let touches_privilege = |role: Role| role.is_admin();
    if let Some(role) = change.role
        && role != target.role
        && (touches_privilege(role) || touches_privilege(target.role))
        && actor != Role::Superadmin
    {
        return Err(Refusal::RoleNeedsSuperadmin);
    }
    if target.role.is_admin() && !target.is_self && actor != Role::Superadmin {
        return Err(Refusal::AdminNeedsSuperadmin);
    }
    let demoted = change.role.is_some_and(|r| r != target.role);
    let suspended = change.status == Some(UserStatus::Suspended) && target.status == UserStatus::Active;
    if target.is_self && (demoted || suspended) {
        return Err(Refusal::NotYourself);
    }
    // Else an admin a superadmin restricted could lift it again.
    if target.is_self
        && actor != Role::Superadmin
        && (change.max_stake.is_some() || change.trading_suspended.is_some())
    {
        return Err(Refusal::OwnLimits);
    }
    if target.role == Role::Superadmin
        && target.status == UserStatus::Active
        && (demoted || suspended)
        && active_superadmins <= 1
    {
        return Err(Refusal::LastSuperadmin);
    }
    if let Some(Some(limit)) = change.max_stake
        && !limit.is_positive()
    {
        return Err(Refusal::InvalidMaxStake);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(role: Role) -> Target {
        Target { role, status: UserStatus::Active, is_self: false }
    }

    #[test]
    fn the_role_rules() {
        let promote = UserChange { role: Some(Role::Admin), ..UserChange::default() };
        let suspend = UserChange { status: Some(UserStatus::Suspended), ..UserChange::default() };
        for (actor, target, change, superadmins, expected) in [
            (Role::Admin, target(Role::User), &promote, 1, Err(Refusal::RoleNeedsSuperadmin)),
            (Role::Superadmin, target(Role::User), &promote, 1, Ok(())),
            (Role::Admin, target(Role::User), &suspend, 1, Ok(())),
            (Role::Admin, target(Role::Admin), &suspend, 1, Err(Refusal::AdminNeedsSuperadmin)),
            (Role::Superadmin, target(Role::Superadmin), &suspend, 1, Err(Refusal::LastSuperadmin)),
            (Role::Superadmin, target(Role::Superadmin), &suspend, 2, Ok(())),
            (
                Role::Superadmin,
                Target { is_self: true, ..target(Role::Superadmin) },
                &suspend,
                3,
                Err(Refusal::NotYourself),
            ),
            (Role::Admin, target(Role::User), &UserChange::default(), 1, Err(Refusal::Empty)),
            (
                Role::Admin,
                Target { is_self: true, ..target(Role::Admin) },
                &UserChange { trading_suspended: Some(false), ..UserChange::default() },
                1,
                Err(Refusal::OwnLimits),
            ),
            (
                Role::Admin,
                Target { is_self: true, ..target(Role::Admin) },
                &UserChange { max_stake: Some(None), ..UserChange::default() },
                1,
                Err(Refusal::OwnLimits),
            ),
            (
                Role::Superadmin,
                Target { is_self: true, ..target(Role::Superadmin) },
                &UserChange { max_stake: Some(None), ..UserChange::default() },
                1,
                Ok(()),
            ),
        ] {
            assert_eq!(
                check_user_change(actor, target, change, superadmins),
                expected,
                "{actor:?} {target:?} {change:?}"
            );
        }
    }

    #[test]
    fn a_stake_limit_must_be_positive_or_lifted() {
        let zero = UserChange { max_stake: Some(Some(Money::ZERO)), ..UserChange::default() };
        assert_eq!(
            check_user_change(Role::Admin, target(Role::User), &zero, 1),
            Err(Refusal::InvalidMaxStake)
        );
        let lift = UserChange { max_stake: Some(None), ..UserChange::default() };
        assert_eq!(check_user_change(Role::Admin, target(Role::User), &lift, 1), Ok(()));
    }
}
