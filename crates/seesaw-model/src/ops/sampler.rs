//! mmdetection's `RandomSampler`: a fixed number of candidates per image, at most a fraction
//! of them positive, chosen at random (seeded), the ground truths added as candidates first.

use rand::Rng;

use super::assigner::AssignResult;

/// Settings; mmdetection's RCNN defaults: 512, 0.25, no upper bound, ground truths added.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomSampler {
    pub num: usize,
    pub pos_fraction: f32,
    /// At most this many negatives per positive; negative turns it off. Default -1.
    pub neg_pos_ub: f32,
    pub add_gt_as_proposals: bool,
}

impl Default for RandomSampler {
    fn default() -> Self {
        Self {
            num: 512,
            pos_fraction: 0.25,
            neg_pos_ub: -1.0,
            add_gt_as_proposals: true,
        }
    }
}

/// The sampled candidates, as indices into the candidate list the sampler saw (ground truths
/// first when added).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingResult {
    pub pos: Vec<usize>,
    pub neg: Vec<usize>,
    /// The assignment over that list (ground truths prepended when added).
    pub assign: AssignResult,
    /// How many ground truths were prepended.
    pub num_gts_added: usize,
}

fn choose<R: Rng>(mut pool: Vec<usize>, k: usize, rng: &mut R) -> Vec<usize> {
    if pool.len() <= k {
        return pool;
    }
    // Partial Fisher-Yates: the first k of a random permutation.
    for i in 0..k {
        let j = rng.random_range(i..pool.len());
        pool.swap(i, j);
    }
    pool.truncate(k);
    pool
}

impl RandomSampler {
    /// Samples from `assign` (over the proposals); `gt_labels` are the image's ground truths'.
    pub fn sample<R: Rng>(
        &self,
        assign: &AssignResult,
        gt_labels: &[usize],
        rng: &mut R,
    ) -> SamplingResult {
        let mut assign = assign.clone();
        let mut added = 0;
        if self.add_gt_as_proposals && !gt_labels.is_empty() {
            added = gt_labels.len();
            let mut inds: Vec<i64> = (1..=added as i64).collect();
            inds.extend(&assign.gt_inds);
            let mut over = vec![1.0; added];
            over.extend(&assign.max_overlaps);
            let mut labels: Vec<Option<usize>> = gt_labels.iter().map(|&l| Some(l)).collect();
            labels.extend(&assign.labels);
            assign = AssignResult {
                gt_inds: inds,
                max_overlaps: over,
                labels,
            };
        }
        let positives: Vec<usize> = (0..assign.gt_inds.len())
            .filter(|&i| assign.gt_inds[i] > 0)
            .collect();
        let negatives: Vec<usize> = (0..assign.gt_inds.len())
            .filter(|&i| assign.gt_inds[i] == 0)
            .collect();
        let pos = choose(
            positives,
            (self.num as f32 * self.pos_fraction) as usize,
            rng,
        );
        let mut num_neg = self.num - pos.len();
        if self.neg_pos_ub >= 0.0 {
            num_neg = num_neg.min((self.neg_pos_ub * pos.len().max(1) as f32) as usize);
        }
        let neg = choose(negatives, num_neg, rng);
        SamplingResult {
            pos,
            neg,
            assign,
            num_gts_added: added,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn assignment(n_pos: usize, n_neg: usize, n_ign: usize) -> AssignResult {
        let mut inds = vec![1i64; n_pos];
        inds.extend(vec![0; n_neg]);
        inds.extend(vec![-1; n_ign]);
        let n = inds.len();
        AssignResult {
            labels: inds.iter().map(|&k| (k > 0).then_some(2)).collect(),
            gt_inds: inds,
            max_overlaps: vec![0.5; n],
        }
    }

    #[test]
    fn fractions_bounds_and_determinism() {
        let a = assignment(300, 1000, 50);
        let s = RandomSampler::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let r = s.sample(&a, &[4, 5], &mut rng);
        // 2 ground truths + 300 positives: 128 kept; the rest of 512 negatives.
        assert_eq!(r.num_gts_added, 2);
        assert_eq!(r.pos.len(), 128);
        assert_eq!(r.neg.len(), 512 - 128);
        assert!(r.pos.iter().all(|&i| r.assign.gt_inds[i] > 0));
        assert!(r.neg.iter().all(|&i| r.assign.gt_inds[i] == 0));
        let mut again = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert_eq!(s.sample(&a, &[4, 5], &mut again), r);
        // Few positives: all taken (ground truths included); the negative bound applies.
        let few = assignment(3, 1000, 0);
        let bounded = RandomSampler {
            neg_pos_ub: 3.0,
            ..RandomSampler::default()
        };
        let r = bounded.sample(&few, &[1], &mut rng);
        assert_eq!((r.pos.len(), r.neg.len()), (4, 12));
        // Nothing to sample: empty, no panic.
        let r = s.sample(&assignment(0, 0, 0), &[], &mut rng);
        assert!(r.pos.is_empty() && r.neg.is_empty());
    }
}
