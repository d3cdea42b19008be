//! The chunks of an import being written: up to [`IN_FLIGHT`] at once, so that the
//! database works on the next chunk's rows while the one before commits, but
//! committing in file order, so that a checkpoint never passes a chunk that did not land.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;

use futures_channel::oneshot;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use nexus_ports::imports::Turn;

use super::Failure;

/// Chunks written at once: while one appends its events and commits (holding the
/// numbering lock), two others write their rows, so both cores of the database stay
/// busy. Three imported 2–4 % faster than two in alternated runs; more would only hold
/// more rows open waiting for their turn.
pub(super) const IN_FLIGHT: usize = 3;

/// A chunk's place in the file order: what it waits for before its commit, and what it
/// signals after.
pub(super) struct Slot {
    pub turn: Turn,
    pub committed: oneshot::Sender<()>,
}

/// One chunk's write, to its commit.
pub(super) type Write<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

pub(super) struct Writes<'a> {
    pending: FuturesOrdered<Write<'a>>,
    /// Resolves once the newest chunk committed; fails if it will not.
    newest: Option<oneshot::Receiver<()>>,
}

impl<'a> Writes<'a> {
    pub(super) fn new() -> Self {
        Self {
            pending: FuturesOrdered::new(),
            newest: None,
        }
    }

    /// Waits until fewer than [`IN_FLIGHT`] chunks are pending. Chunks in flight never
    /// share an email (a repeat of an earlier chunk's is reported before its chunk is
    /// written), so no chunk's lookup needs another's commit.
    pub(super) async fn room(&mut self) -> Result<(), Failure> {
        while self.pending.len() >= IN_FLIGHT {
            self.oldest_done().await?;
        }
        Ok(())
    }

    /// Starts the next chunk's write, made by `write` from the chunk's place after
    /// every chunk started so far.
    pub(super) fn start(&mut self, write: impl FnOnce(Slot) -> Write<'a>) {
        let (committed, signal) = oneshot::channel();
        let turn: Turn = match self.newest.replace(signal) {
            Some(before) => Box::pin(before.map(|signal| signal.is_ok())),
            None => Box::pin(std::future::ready(true)),
        };
        self.pending.push_back(write(Slot { turn, committed }));
    }

    /// Runs `work` to its end while the pending writes go on beside it.
    ///
    /// # Errors
    /// The first failed write's (the later ones are waited out first).
    pub(super) async fn alongside<T>(
        &mut self,
        work: impl Future<Output = T>,
    ) -> Result<T, Failure> {
        let mut work = pin!(work);
        let outcome = std::future::poll_fn(|cx| {
            while let Poll::Ready(Some(written)) = self.pending.poll_next_unpin(cx) {
                written?;
            }
            work.as_mut().poll(cx).map(Ok)
        })
        .await;
        if outcome.is_err() {
            self.drain().await;
        }
        outcome
    }

    /// Waits for every pending write.
    ///
    /// # Errors
    /// The first failed write's.
    pub(super) async fn finish(mut self) -> Result<(), Failure> {
        while !self.pending.is_empty() {
            self.oldest_done().await?;
        }
        Ok(())
    }

    async fn oldest_done(&mut self) -> Result<(), Failure> {
        let Some(written) = self.pending.next().await else {
            return Ok(());
        };
        if written.is_err() {
            self.drain().await;
        }
        written
    }

    /// After a failure the later chunks roll back, since their turn never comes. They
    /// are awaited, not dropped, so that no transaction is cut off halfway.
    async fn drain(&mut self) {
        while self.pending.next().await.is_some() {}
    }
}
