//! How the tenants of one card share its time: guaranteed requests, idle time lent up to
//! limits, low priority after high, headroom while sharing ([`allocate`]). Pure: the demands
//! come from the card files ([`crate::card::Card::demands`]).

/// A tenant is busy when it launched this recently.
pub const BUSY_WINDOW_NS: u64 = 100_000_000;

/// What a tenant asks for on a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Tenant key.
    pub tenant: u64,
    /// Low priority?
    pub low: bool,
    /// Guaranteed share (percent).
    pub request: u32,
    /// Cap (percent).
    pub limit: u32,
    /// Launched within the busy window.
    pub busy: bool,
    /// Share of the card its processes charged recently (millionths).
    pub used_ppm: u64,
    /// Its processes that launched within the busy window (each a context the card's time is
    /// sliced among).
    pub contexts: u32,
}

/// Points of the card not handed out beyond requests while a busy high-priority tenant shares
/// the card with other busy tenants. A real H100 time-slicing two processes that synchronise
/// often delivers about 94 % of the card, and the loss fell on the high-priority tenant: beside
/// a low-priority tenant given the 40 % left, a tenant at 60 % got 50–54 % (`scripts/gpu-check`,
/// `bench/gpu/gpu-check-2026-11-27-*`), while two tenants at 30 % + 60 % both got theirs.
pub const SHARED_HEADROOM_PCT: u32 = 10;

/// The rate (percent of the card) tenant `me` may use now, given every tenant's demand.
pub fn allocate(demands: &[Demand], me: &Demand) -> u32 {
    let others = demands.iter().filter(|d| d.tenant != me.tenant && d.busy);
    let busy: Vec<&Demand> = others.chain(std::iter::once(me)).collect();
    let high_requests: u32 = busy
        .iter()
        .filter(|d| !d.low)
        .map(|d| d.request.min(d.limit))
        .sum();
    let shared = busy.len() > 1 && busy.iter().any(|d| !d.low);
    let card = 100 - if shared { SHARED_HEADROOM_PCT } else { 0 };
    let idle = card.saturating_sub(high_requests);
    let borrowers = busy
        .iter()
        .filter(|d| !d.low && d.limit > d.request)
        .count() as u32;
    // A busy high-priority tenant: its request, plus an equal part of the idle time if its
    // limit is above its request.
    let high_rate = |d: &Demand| {
        let lent = if d.limit > d.request {
            idle / borrowers
        } else {
            0
        };
        (d.request + lent).min(d.limit)
    };
    let rate = if !me.low {
        high_rate(me)
    } else {
        // Low priority comes after the high-priority tenants, borrowed time included.
        let high: u32 = busy.iter().filter(|d| !d.low).map(|d| high_rate(d)).sum();
        let left = card.saturating_sub(high);
        let low_requests: u32 = busy
            .iter()
            .filter(|d| d.low)
            .map(|d| d.request.max(1))
            .sum();
        let share = (left as u64 * me.request.max(1) as u64 / low_requests.max(1) as u64) as u32;
        share.min(me.limit)
    };
    rate.clamp(1, 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(tenant: u64, low: bool, request: u32, limit: u32, busy: bool) -> Demand {
        Demand {
            tenant,
            low,
            request,
            limit,
            busy,
            used_ppm: 0,
            contexts: busy as u32,
        }
    }

    #[test]
    fn idle_time_is_lent_up_to_the_limit_and_taken_back() {
        let a = d(1, false, 30, 80, true);
        // Alone: borrows the idle 70 %, up to its limit.
        assert_eq!(allocate(&[a], &a), 80);
        // B (request 50) idle: still lent.
        let b_idle = d(2, false, 50, 50, false);
        assert_eq!(allocate(&[a, b_idle], &a), 80);
        // B busy: A keeps its 30 % plus the 20 % nobody requests, less the headroom.
        let b = d(2, false, 50, 50, true);
        assert_eq!(allocate(&[a, b], &a), 50 - SHARED_HEADROOM_PCT);
        assert_eq!(allocate(&[a, b], &b), 50);
    }

    #[test]
    fn high_priority_borrowers_come_before_low_priority_tenants() {
        let borrower = d(1, false, 30, 80, true);
        let low = d(2, true, 100, 100, true);
        assert_eq!(allocate(&[borrower, low], &borrower), 80);
        assert_eq!(
            allocate(&[borrower, low], &low),
            100 - SHARED_HEADROOM_PCT - 80
        );
        let greedy = d(1, false, 30, 100, true);
        assert_eq!(allocate(&[greedy, low], &low), 1, "a trickle");
    }

    #[test]
    fn tenants_alone_or_only_low_priority_get_the_whole_card() {
        let high = d(1, false, 30, 100, true);
        assert_eq!(allocate(&[high], &high), 100);
        let a = d(1, true, 50, 100, true);
        let b = d(2, true, 50, 100, true);
        assert_eq!(allocate(&[a, b], &a), 50);
        assert_eq!(allocate(&[a, b], &b), 50);
    }

    #[test]
    fn low_priority_uses_what_high_priority_leaves() {
        let low = d(1, true, 100, 100, true);
        assert_eq!(allocate(&[low], &low), 100);
        let high = d(2, false, 60, 60, true);
        assert_eq!(allocate(&[low, high], &low), 40 - SHARED_HEADROOM_PCT);
        assert_eq!(allocate(&[low, high], &high), 60);
        let full = d(3, false, 100, 100, true);
        assert_eq!(allocate(&[low, full], &low), 1, "a trickle");
        let high_idle = d(2, false, 60, 60, false);
        assert_eq!(allocate(&[low, high_idle], &low), 100, "resumes");
    }

    #[test]
    fn low_priority_tenants_split_in_proportion_to_requests() {
        let a = d(1, true, 10, 100, true);
        let b = d(2, true, 30, 100, true);
        let h = d(3, false, 60, 60, true);
        // They share the 30 % left (40 less the headroom) 1 : 3.
        assert_eq!(allocate(&[a, b, h], &a), 7);
        assert_eq!(allocate(&[a, b, h], &b), 22);
    }
}
