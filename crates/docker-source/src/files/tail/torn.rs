//! Numbering a listing torn by a rotation in progress.
//!
//! Docker renames from the oldest file down (`.1` → `.2`, then the live file → `.1`) while a
//! listing looks the files up from the live one up, so a listing taken during a rotation has a
//! hole (a file already renamed away from its index, the next one not yet renamed into it) or
//! an inode twice (renamed between two look-ups). A hole is also left by a rotated file
//! deleted by hand. Either way, the files from the live one up to the first hole or repeated
//! inode are those of one moment; each later *run* of contiguous files was either renamed
//! while the listing was taken (one index higher than at that moment) or not (a hole deleted
//! by hand), and nothing in the listing tells which. A generation the tail holds in a run
//! tells: its number numbers the run. The live file's run may be numbered by the count of
//! creations instead. A run that nothing numbers is not guessed: the listing is not used.

use std::io;

use super::{listing::Listed, look::Held};

/// The files of a torn listing (oldest first), each at the index it had at the moment the
/// live file was listed (so `live - index` is its number, for the returned `live`). The live
/// file's run is numbered by a held generation in it, else by `live_by_count` (the count of
/// creations taken with the listing, unchanged during it); every other run by a held
/// generation in it; a run older than a held generation that nothing numbers is left out (the
/// tail wants only generations newer than the one it reads). `None` if a newer run is numbered
/// by nothing, or the runs' numbers overlap.
pub(super) fn place(
    files: &[Listed],
    live_by_count: Option<i64>,
    held: &mut impl Held,
) -> io::Result<Option<(Vec<Listed>, i64)>> {
    let mut numbered: Vec<(i64, &Listed)> = Vec::new();
    let mut behind_held = false;
    for run in runs(files) {
        let by_count = run.first().filter(|l| l.index == 0).and(live_by_count);
        let by_held = held_live(&run, held)?;
        let Some(live) = by_held.or(by_count) else {
            if behind_held {
                // Older than a generation held: read already, or being read.
                continue;
            }
            return Ok(None);
        };
        behind_held |= by_held.is_some();
        numbered.extend(run.into_iter().map(|l| (live - i64::from(l.index), l)));
    }
    // Newest first: the numbers must go down.
    if numbered.windows(2).any(|pair| pair[1].0 >= pair[0].0) {
        return Ok(None);
    }
    let Some(&(newest, newest_listed)) = numbered.first() else {
        return Ok(None);
    };
    let live = newest + i64::from(newest_listed.index);
    let mut placed = Vec::with_capacity(numbered.len());
    for (number, listed) in numbered.into_iter().rev() {
        let Ok(index) = u32::try_from(live - number) else {
            return Ok(None);
        };
        placed.push(Listed {
            index,
            ..listed.clone()
        });
    }
    Ok(Some((placed, live)))
}

/// The runs of contiguous indices, newest first (each newest first); a file listed twice is
/// kept where it was listed first (the lower index) and ends its run.
fn runs(files: &[Listed]) -> Vec<Vec<&Listed>> {
    let mut runs: Vec<Vec<&Listed>> = Vec::new();
    let mut seen = Vec::new();
    let mut next_index = None;
    for listed in files.iter().rev() {
        if seen.contains(&listed.id) {
            next_index = None;
            continue;
        }
        seen.push(listed.id);
        match runs.last_mut() {
            Some(run) if next_index == Some(listed.index) => run.push(listed),
            _ => runs.push(vec![listed]),
        }
        next_index = Some(listed.index + 1);
    }
    runs
}

/// The live file's number by a held generation in `run`, if there is one.
fn held_live(run: &[&Listed], held: &mut impl Held) -> io::Result<Option<i64>> {
    for listed in run {
        if let Some(number) = held.number(listed, false)? {
            return Ok(Some(number + i64::from(listed.index)));
        }
    }
    Ok(None)
}
