//! Token-level differences between the steered and the default text (a longest common subsequence).

/// For each token of `steered`, whether it is not part of a longest common subsequence with
/// `default` (compared by token id). Quadratic in the lengths, which the panel keeps small.
pub fn changed(default: &[u32], steered: &[u32]) -> Vec<bool> {
    let (n, m) = (default.len(), steered.len());
    // lcs[i][j]: LCS length of default[i..] and steered[j..], flattened row-major.
    let w = m + 1;
    let mut lcs = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i * w + j] = if default[i] == steered[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let mut out = vec![true; m];
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if default[i] == steered[j] {
            out[j] = false;
            i += 1;
            j += 1;
        } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_text_has_no_changes() {
        assert_eq!(changed(&[1, 2, 3], &[1, 2, 3]), vec![false; 3]);
        assert!(changed(&[], &[]).is_empty());
    }

    #[test]
    fn insertions_and_substitutions_are_marked_and_the_rest_kept() {
        // default: the cat sat ; steered: the big dog sat
        assert_eq!(
            changed(&[1, 2, 3], &[1, 9, 8, 3]),
            vec![false, true, true, false]
        );
        assert_eq!(changed(&[], &[4, 5]), vec![true, true]);
        assert_eq!(changed(&[4, 5], &[]), Vec::<bool>::new());
        // A shifted sequence keeps its common run.
        assert_eq!(
            changed(&[1, 2, 3, 4], &[7, 1, 2, 3, 4]),
            vec![true, false, false, false, false]
        );
    }
}
