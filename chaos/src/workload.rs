//! The workload's randomness: a seeded generator, the SKU distribution (a hot set plus a
//! Zipf law) and the choice of each operation. Everything drawn here comes from the seed
//! alone, so the same scenario sends the same sequence of operation kinds, SKUs,
//! quantities and arrival times.

use crate::scenario::{Mix, Workload};

/// SplitMix64: small, fast, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    pub fn coin(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Seconds until the next arrival of a Poisson process of `rate` per second.
    pub fn exponential(&mut self, rate: f64) -> f64 {
        -(1.0 - self.unit()).ln() / rate
    }
}

/// Which SKU a request goes to.
#[derive(Debug, Clone)]
pub struct SkuPicker {
    hot: usize,
    hot_fraction: f64,
    /// Cumulative Zipf weights over all SKUs.
    cdf: Vec<f64>,
}

impl SkuPicker {
    pub fn new(w: &Workload) -> Self {
        let mut total = 0.0;
        let cdf = (1..=w.skus)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(w.zipf_s);
                total
            })
            .collect::<Vec<_>>();
        let cdf = cdf.into_iter().map(|c| c / total).collect();
        Self { hot: w.hot_skus, hot_fraction: w.hot_fraction, cdf }
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        if self.hot > 0 && rng.coin(self.hot_fraction) {
            return rng.below(self.hot as u64) as usize;
        }
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

pub fn sku_name(i: usize) -> String {
    format!("chaos-sku-{i}")
}

pub fn warehouse_name(i: usize) -> String {
    format!("w{i}")
}

pub fn tenant_name(i: usize) -> String {
    format!("tenant-{i}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reserve,
    ReserveThenPoll,
    Purchase,
    Release,
    Extend,
    RetrySame,
    RetryConflict,
    Availability,
    Restock,
    Hostile,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Reserve => "reserve",
            Kind::ReserveThenPoll => "reserve-then-poll",
            Kind::Purchase => "purchase",
            Kind::Release => "release",
            Kind::Extend => "extend",
            Kind::RetrySame => "retry-same",
            Kind::RetryConflict => "retry-conflict",
            Kind::Availability => "availability",
            Kind::Restock => "restock",
            Kind::Hostile => "hostile",
        }
    }
}

/// Everything one operation needs that comes from the seed.
#[derive(Debug, Clone)]
pub struct Draw {
    pub kind: Kind,
    pub tenant: usize,
    pub sku: usize,
    pub warehouse: usize,
    pub quantity: u32,
    pub ttl_ms: u64,
    /// 0: fewest splits, 1: most available, 2: a priority order, 3: one warehouse.
    pub strategy: u8,
    pub allow_partial: bool,
    /// Picks among known holds or earlier requests (as a fraction of their count).
    pub pick: f64,
    /// Which hostile request, which API instance.
    pub variant: u64,
    /// Sent through the `ingest` library rather than HTTP (a tenant's command only).
    pub ingest: bool,
}

/// The generator of draws for one scenario.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    skus: SkuPicker,
    weights: Vec<(Kind, f64)>,
    total: f64,
    workload: Workload,
}

impl Generator {
    pub fn new(seed: u64, workload: &Workload) -> Self {
        let Mix {
            reserve,
            reserve_then_poll,
            purchase,
            release,
            extend,
            retry_same,
            retry_conflict,
            availability,
            restock,
        } = workload.mix;
        let weights = vec![
            (Kind::Reserve, reserve),
            (Kind::ReserveThenPoll, reserve_then_poll),
            (Kind::Purchase, purchase),
            (Kind::Release, release),
            (Kind::Extend, extend),
            (Kind::RetrySame, retry_same),
            (Kind::RetryConflict, retry_conflict),
            (Kind::Availability, availability),
            (Kind::Restock, restock),
        ];
        let total = weights.iter().map(|(_, w)| w.max(0.0)).sum();
        Self {
            rng: Rng::new(seed),
            skus: SkuPicker::new(workload),
            weights,
            total,
            workload: workload.clone(),
        }
    }

    /// Seconds until the next request.
    pub fn gap(&mut self) -> f64 {
        self.rng.exponential(self.workload.rate)
    }

    pub fn draw(&mut self) -> Draw {
        let w = &self.workload;
        let kind = if self.rng.coin(w.hostile_fraction) {
            Kind::Hostile
        } else {
            let mut x = self.rng.unit() * self.total;
            let mut chosen = Kind::Reserve;
            for (kind, weight) in &self.weights {
                if x < weight.max(0.0) {
                    chosen = *kind;
                    break;
                }
                x -= weight.max(0.0);
            }
            chosen
        };
        let [low, high] = w.ttl_ms;
        Draw {
            kind,
            tenant: self.rng.below(w.tenants as u64) as usize,
            sku: self.skus.pick(&mut self.rng),
            warehouse: self.rng.below(w.warehouses as u64) as usize,
            quantity: 1 + self.rng.below(u64::from(w.max_quantity)) as u32,
            ttl_ms: low + self.rng.below(high - low + 1),
            strategy: self.rng.below(4) as u8,
            allow_partial: self.rng.coin(0.2),
            pick: self.rng.unit(),
            variant: self.rng.next_u64(),
            // Drawn only when asked for, so scenarios without it keep their workloads.
            ingest: w.ingest_fraction > 0.0 && self.rng.coin(w.ingest_fraction),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        toml::from_str("rate = 100.0").unwrap()
    }

    #[test]
    fn the_same_seed_draws_the_same_sequence() {
        let w = workload();
        let mut a = Generator::new(7, &w);
        let mut b = Generator::new(7, &w);
        for _ in 0..1000 {
            let (x, y) = (a.draw(), b.draw());
            assert_eq!(
                (x.kind, x.sku, x.quantity, x.ttl_ms),
                (y.kind, y.sku, y.quantity, y.ttl_ms)
            );
            assert_eq!(a.gap().to_bits(), b.gap().to_bits());
        }
    }

    #[test]
    fn the_hot_set_gets_its_share_and_the_rest_is_spread() {
        let mut w = workload();
        w.skus = 100;
        w.hot_skus = 2;
        w.hot_fraction = 0.5;
        let picker = SkuPicker::new(&w);
        let mut rng = Rng::new(1);
        let picks: Vec<usize> = (0..20_000).map(|_| picker.pick(&mut rng)).collect();
        let hot = picks.iter().filter(|&&s| s < 2).count() as f64 / picks.len() as f64;
        assert!(hot > 0.5 && hot < 0.7, "{hot}");
        let distinct = picks.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(distinct > 60, "{distinct} SKUs touched");
        assert!(picks.iter().all(|&s| s < 100));
    }
}
