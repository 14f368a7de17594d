//! Sizes checked before the builder allocates anything: every product a spec implies is
//! computed with overflow checks; the weights a spec needs are compared with the elements the
//! files really hold; tables built from sizes alone (rotary and sinusoidal position tables,
//! seeded preset weights) are compared with the memory the machine has available.

use tcat_core::{Error, Result};
use tcat_spec::{ArchSpec, FeedForwardKind, PositionSpec, TowerSpec};

use super::WeightSource;

/// Bytes the machine can still allocate: `MemAvailable` from `/proc/meminfo` on Linux, the
/// room left under a cgroup v2 limit (`memory.max` − `memory.current`) and under the process's
/// address-space limit (`ulimit -v`: its soft limit − `VmSize`) when there are ones, whichever
/// is smallest; `None` where none can be read (the check is then skipped).
pub fn available_memory() -> Option<u64> {
    let address_space = address_space_left();
    match (machine_memory(), address_space) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The process's address-space headroom: the soft `Max address space` of `/proc/self/limits`
/// (`unlimited` is none) minus the `VmSize` of `/proc/self/status`.
fn address_space_left() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    let soft: u64 = line.trim_start_matches("Max address space").split_whitespace().next()?.parse().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let size = status.lines().find_map(|l| l.strip_prefix("VmSize:"))?;
    let kib: u64 = size.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(soft.saturating_sub(kib.checked_mul(1024)?))
}

fn machine_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
        let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
        kib.checked_mul(1024)
    });
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{name}")).ok()?.trim().parse().ok()
    };
    // `memory.max` reads "max" without a limit, which does not parse: no cgroup bound.
    let cgroup = read("memory.max").zip(read("memory.current")).map(|(max, current)| max.saturating_sub(current));
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

struct Checker<'a> {
    location: String,
    tower: &'a TowerSpec,
}

impl Checker<'_> {
    fn error(&self, message: String) -> Error {
        Error::InvalidInput(format!("{}: architecture: {message}", self.location))
    }

    /// `a × b`, or an error naming both factors.
    fn mul(&self, a: (&str, u64), b: (&str, u64)) -> Result<u64> {
        a.1.checked_mul(b.1).ok_or_else(|| self.error(format!("{} ({}) × {} ({}) overflows", a.0, a.1, b.0, b.1)))
    }

    /// Values that would make every output NaN without an error: a negative or non-finite
    /// norm ε, a non-positive or non-finite rotary base.
    fn check_values(&self) -> Result<()> {
        let t = self.tower;
        let eps = t.norm.eps();
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(self.error(format!(
                "the norm epsilon (layer_norm_eps / rms_norm_eps / its GGUF key) is {eps}, expected a finite \
                 number >= 0"
            )));
        }
        if let PositionSpec::Rotary(r) = t.positions
            && !(r.base.is_finite() && r.base > 0.0)
        {
            return Err(self.error(format!(
                "the rotary base (rope_theta / llama.rope.freq_base) is {}, expected a finite number > 0",
                r.base
            )));
        }
        Ok(())
    }

    fn add(&self, what: &str, a: u64, b: u64) -> Result<u64> {
        a.checked_add(b).ok_or_else(|| self.error(format!("the number of parameters overflows at {what}")))
    }

    /// The fewest parameters the tower's weights must hold: the word table, and per layer the
    /// attention projections and (dense layers) the feed-forward projections.
    fn min_params(&self) -> Result<u64> {
        let t = self.tower;
        let a = &t.attention;
        let h = t.hidden_size as u64;
        let q = self.mul(("num_heads", a.num_heads as u64), ("head_dim", a.head_dim as u64))?;
        let kv = self.mul(("num_kv_heads", a.num_kv_heads as u64), ("head_dim", a.head_dim as u64))?;
        let qkv_out = self.add("the attention width", q, kv)?;
        let qkv_out = self.add("the attention width", qkv_out, kv)?;
        let qkv_out = self.add("the attention width", qkv_out, h)?;
        let attention = match a.latent {
            // Latent attention: at least the latent's down-projection and the output projection.
            Some(l) => {
                let values = self.mul(("num_heads", a.num_heads as u64), ("v_head_dim", l.value_dim as u64))?;
                let widths = self.add("the latent attention widths", l.kv_rank as u64, values)?;
                self.mul(("hidden_size", h), ("the latent attention widths", widths))?
            }
            None => self.mul(("hidden_size", h), ("the attention widths", qkv_out))?,
        };
        let ffn = match t.feed_forward.experts {
            Some(_) => 0,
            None => {
                let n = match t.feed_forward.kind {
                    FeedForwardKind::Plain => 2,
                    FeedForwardKind::Gated => 3,
                };
                let one = self.mul(("hidden_size", h), ("intermediate size", t.feed_forward.inner as u64))?;
                self.mul(("the feed-forward projections", n), ("hidden × intermediate", one))?
            }
        };
        let layer = self.add("one layer", attention, ffn)?;
        // Layers sharing weights (ALBERT) store one set per group.
        let stored_layers = match t.sharing {
            tcat_spec::LayerSharing::None => ("num_layers", t.num_layers as u64),
            tcat_spec::LayerSharing::Groups { groups } => ("the layer groups", groups.min(t.num_layers) as u64),
        };
        let layers = self.mul(stored_layers, ("parameters per layer", layer))?;
        let word =
            self.mul(("vocab_size", t.vocab_size as u64), ("the embedding width", t.embedding_width() as u64))?;
        self.add("the word table", layers, word)
    }

    /// Bytes of the tables the builder computes from sizes alone (not read from the files),
    /// counted in f32 with the intermediate buffers of their construction.
    fn computed_table_bytes(&self) -> Result<u64> {
        let t = self.tower;
        let positions = ("max positions (the context length)", t.max_positions as u64);
        let elements = match t.positions {
            // cos and sin, plus the angle table they are computed from.
            PositionSpec::Rotary(r) => {
                let features = self.mul(("rotary features", r.rotary_dim(t.attention.head_dim) as u64), ("3", 3))?;
                // Built for at most the cap (longer sequences are refused by the decoder).
                let positions = (positions.0, positions.1.min(super::ROTARY_TABLE_CAP as u64));
                self.mul(positions, ("table features", features))?
            }
            PositionSpec::Sinusoidal { .. } => {
                let features = self.mul(("width", t.side_table_width() as u64), ("3", 3))?;
                self.mul(positions, ("table features", features))?
            }
            PositionSpec::Learned { ids } => {
                // Read from the file, but the offset added to the count must not overflow.
                let offset = match ids {
                    tcat_spec::PositionIdRule::Sequential { offset } => offset,
                    tcat_spec::PositionIdRule::PaddingAware { .. } => 0,
                };
                t.max_positions.checked_add(offset).ok_or_else(|| {
                    self.error(format!("max positions {} plus the offset {offset} overflows", t.max_positions))
                })?;
                0
            }
            PositionSpec::ImageGrid { text_len, rows, cols } => {
                // The row and column ids of every image token, and the summed [image, width] table.
                let image = self.mul(("image rows", rows as u64), ("image columns", cols as u64))?;
                self.add("the image grid", image, text_len as u64)?;
                let per_token = self.add("the image grid", t.side_table_width() as u64, 2)?;
                self.mul(("image tokens", image), ("ids and features per token", per_token))?
            }
            _ => 0,
        };
        self.mul(("table elements", elements), ("4 bytes", 4))
    }
}

/// Checks every size of `spec` before [`super::build`] allocates: products without overflow,
/// weights no larger than the files hold, computed tables (and a synthetic source's weights)
/// no larger than the available memory.
pub fn check(spec: &ArchSpec, weights: &dyn WeightSource) -> Result<()> {
    let location = weights.location();
    let mut needed = 0u64;
    let mut sizes = Vec::new();
    for tower in spec.towers() {
        let c = Checker { location: location.clone(), tower };
        c.check_values()?;
        let params = c.min_params()?;
        needed = c.add("the towers", needed, params)?;
        let a = &tower.attention;
        sizes.push(format!(
            "vocabulary {}, width {}, {} layers, {} heads ({} kv) of {} features, feed-forward {}, {} positions",
            tower.vocab_size,
            tower.hidden_size,
            tower.num_layers,
            a.num_heads,
            a.num_kv_heads,
            a.head_dim,
            tower.feed_forward.inner,
            tower.max_positions
        ));
    }
    if let tcat_spec::Stacks::EncoderDecoder { decoder, shared_embeddings: true, .. } = &spec.stacks {
        // One token table serves both towers (counted once).
        needed = needed.saturating_sub(decoder.vocab_size as u64 * decoder.embedding_width() as u64);
    }
    if let Some(stored) = weights.stored_elements()
        && needed > stored
    {
        return Err(Error::InvalidInput(format!(
            "{location}: the architecture ({}) implies at least {needed} parameters, but the weight files hold only \
             {stored}",
            sizes.join("; ")
        )));
    }
    let available = available_memory();
    if let (Some(bytes), Some(avail)) = (weights.resident_bytes(), available)
        && weights.device().is_cpu()
        && bytes > avail
    {
        return Err(Error::InvalidInput(format!(
            "{location}: the weights take {bytes} bytes once loaded as {:?}, more than the {avail} bytes of memory \
             available",
            weights.dtype()
        )));
    }
    if weights.is_synthetic()
        && let Some(avail) = available
    {
        let bytes = needed.saturating_mul(weights.dtype().size_in_bytes() as u64);
        if bytes > avail {
            return Err(Error::InvalidInput(format!(
                "{location}: the architecture ({}) needs at least {bytes} bytes of weights, more than the {avail} \
                 bytes of memory available",
                sizes.join("; ")
            )));
        }
    }
    for tower in spec.towers() {
        let c = Checker { location: location.clone(), tower };
        let tables = c.computed_table_bytes()?;
        if let Some(avail) = available
            && tables > avail
        {
            return Err(c.error(format!(
                "the position table for {} positions (the context length: max_position_embeddings, n_positions or \
                 llama.context_length) needs {tables} bytes, more than the {avail} bytes of memory available",
                tower.max_positions
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn available_memory_is_read_on_linux() {
        let bytes = super::available_memory().expect("MemAvailable on Linux");
        assert!(bytes > 0);
    }
}
