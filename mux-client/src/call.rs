//! One call: what it asks ([`CallRequest`]), what it gets ([`Reply`]), the
//! handle that waits for it, polls it or awaits it ([`Call`]), and the
//! writer of a streamed request body ([`Upload`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use mux_core::frame::{MetadataBuilder, MetadataError};
use mux_core::rpc::{BodyCheck, RequestHead};
use mux_runtime::{LoopHandle, Piece, SendPoll};

use crate::command::{Command, PendingCall};
use crate::completion::{Abandoned, Completion};
use crate::credit::Credit;
use crate::error::CallError;
use crate::reply::Reply;

/// Bytes an upload may have handed to the loop that its connection has not
/// accepted yet; beyond, `Upload::write` blocks. 1 MiB, the size of a
/// stream's send buffer: together they keep a fast link busy.
const UPLOAD_CREDIT: usize = 1 << 20;

/// A call to make: route, body, metadata and deadline.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub(crate) route: String,
    /// The caller's metadata entries, in wire form.
    pub(crate) metadata: MetadataBuilder,
    /// The first entry that could not be encoded: the call fails with it.
    pub(crate) invalid: Option<MetadataError>,
    pub(crate) body: Bytes,
    pub(crate) timeout: Option<Duration>,
    /// The upload's declared length (a whole body declares its own).
    pub(crate) length: Option<u64>,
}

impl CallRequest {
    /// The request head, or why an entry could not be encoded. A whole
    /// body declares its length; an upload, what the caller declared
    /// (`spec/patterns.md` §1.8).
    pub(crate) fn head(
        &self,
        deadline: Option<Duration>,
        upload: bool,
    ) -> Result<RequestHead, MetadataError> {
        if let Some(err) = self.invalid {
            return Err(err);
        }
        let length = if upload {
            self.length
        } else {
            Some(self.body.len() as u64)
        };
        Ok(RequestHead {
            route: self.route.clone(),
            deadline,
            length,
            metadata: self.metadata.clone().finish(),
        })
    }

    /// The `$auth` request that presents `token` on a new connection
    /// (`spec/patterns.md` §8.1).
    pub(crate) fn auth(token: &str) -> Self {
        Self::new(mux_core::patterns::AUTH, "").header(
            Bytes::from_static(mux_core::patterns::AUTHORIZATION),
            mux_core::patterns::bearer_authorization(token),
        )
    }

    /// A call of `route` with `body`.
    pub fn new(route: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            route: route.into(),
            metadata: MetadataBuilder::default(),
            invalid: None,
            body: body.into(),
            timeout: None,
            length: None,
        }
    }

    /// The same call with a metadata entry.
    pub fn header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        let (name, value) = (name.into(), value.into());
        if let Err(err) = self.metadata.push(&name, &value) {
            self.invalid.get_or_insert(err);
        }
        self
    }

    /// Declares an upload's whole length in bytes (the body given here
    /// included), for [`Client::open_upload`](crate::Client::open_upload):
    /// the server then refuses a body that arrives shorter or longer (400),
    /// so bytes lost on the way cannot pass as a shorter upload
    /// (`spec/patterns.md` §1.8), and [`Upload`] refuses to write more or
    /// finish with fewer. A whole-body call declares its length by itself.
    pub fn length(mut self, bytes: u64) -> Self {
        self.length = Some(bytes);
        self
    }

    /// The same call with a deadline `timeout` from when it is started.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A call in flight: wait for it, poll it, or `.await` it. Dropping it
/// before it completes cancels the call.
#[derive(Debug)]
pub struct Call {
    pub(crate) completion: Option<Completion<Result<Reply, CallError>>>,
    pub(crate) id: Option<u64>,
    pub(crate) handle: LoopHandle<Command>,
    pub(crate) failed: Option<CallError>,
    /// The call, while the loop's command queue had no room for it: sent
    /// when the call is awaited (the task waits for room) or waited for
    /// (the thread blocks), never dropped unsent while awaited.
    pub(crate) unsent: Option<PendingCall>,
}

impl Call {
    /// Hands the unsent call to the loop, blocking while its queue is full.
    pub(crate) fn send_blocking(&mut self) {
        if let Some(call) = self.unsent.take() {
            call.send_blocking(&self.handle);
        }
    }

    /// Blocks until the reply arrives.
    pub fn wait(mut self) -> Result<Reply, CallError> {
        self.send_blocking();
        if let Some(err) = self.failed.take() {
            return Err(err);
        }
        let completion = self.completion.take().ok_or(CallError::Closed)?;
        completion.wait().map_err(|_| CallError::Closed)?
    }

    /// The reply if it has arrived, without blocking.
    pub fn try_result(&mut self) -> Option<Result<Reply, CallError>> {
        if let Some(call) = self.unsent.take() {
            match self.handle.try_send(Command::Call(call)) {
                Ok(()) => {}
                Err(mux_runtime::TrySendError::Full(Command::Call(call))) => {
                    self.unsent = Some(call);
                    return None;
                }
                Err(err) => {
                    if let Command::Call(call) = err.into_inner() {
                        call.fail(CallError::Closed);
                    }
                }
            }
        }
        self.take_with(|completion| completion.try_take())
    }

    /// Blocks until the reply arrives or `timeout` passes (`None`; the call goes on).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<Reply, CallError>> {
        self.send_blocking();
        self.take_with(|completion| completion.wait_timeout(timeout))
    }

    /// The outcome if `take` finds it; a completion the loop abandoned is
    /// [`CallError::Closed`].
    fn take_with(
        &mut self,
        take: impl FnOnce(
            &mut Completion<Result<Reply, CallError>>,
        ) -> Result<Option<Result<Reply, CallError>>, Abandoned>,
    ) -> Option<Result<Reply, CallError>> {
        if let Some(err) = self.failed.take() {
            return Some(Err(err));
        }
        let outcome = match take(self.completion.as_mut()?) {
            Ok(None) => return None,
            Ok(Some(result)) => result,
            Err(Abandoned) => Err(CallError::Closed),
        };
        self.completion = None;
        Some(outcome)
    }

    /// Cancels the call now (dropping it does the same).
    pub fn cancel(mut self) {
        self.send_cancel();
    }

    /// Cancels the call and makes `error` its outcome.
    pub(crate) fn fail_now(&mut self, error: CallError) {
        self.send_cancel();
        self.failed = Some(error);
    }

    fn send_cancel(&mut self) {
        if let (Some(completion), Some(id)) = (self.completion.take(), self.id) {
            if !completion.is_ready() {
                let _ = self.handle.try_send(Command::Cancel(id));
            }
        }
    }
}

impl Future for Call {
    type Output = Result<Reply, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(call) = self.unsent.take() {
            self.unsent = call.poll_send(&self.handle, cx);
            if self.unsent.is_some() {
                return Poll::Pending;
            }
        }
        if let Some(err) = self.failed.take() {
            return Poll::Ready(Err(err));
        }
        let Some(completion) = self.completion.as_mut() else {
            return Poll::Ready(Err(CallError::Closed));
        };
        match Pin::new(completion).poll(cx) {
            Poll::Ready(result) => {
                self.completion = None;
                Poll::Ready(result.unwrap_or(Err(CallError::Closed)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.send_cancel();
    }
}

/// A call whose request body is being streamed. Writes block (or, with
/// [`Upload::try_write`], report) while the connection cannot take more, so
/// a slow server slows the writer down end to end.
#[derive(Debug)]
pub struct Upload {
    pub(crate) call: Option<Call>,
    pub(crate) id: u64,
    pub(crate) credit: Arc<Credit>,
    pub(crate) handle: LoopHandle<Command>,
    /// What was written against the declared length.
    pub(crate) check: BodyCheck,
    /// As an `AsyncWrite`: a piece written (its credit taken) that the full
    /// command queue has not taken yet.
    pub(crate) queued: Option<Command>,
    /// As an `AsyncWrite`: the end of the body was sent.
    pub(crate) ended: bool,
}

impl Upload {
    fn push(
        &mut self,
        bytes: Bytes,
        end_message: bool,
        end_stream: bool,
        wait: bool,
    ) -> Result<bool, CallError> {
        let mut check = self.check;
        check.add(bytes.len())?;
        if end_stream {
            check.finish()?;
        }
        if let Some(call) = self.call.as_mut() {
            call.send_blocking();
        }
        if let Some(command) = self.queued.take() {
            self.handle.send(command).map_err(|_| CallError::Closed)?;
        }
        if !self.credit.acquire(bytes.len(), UPLOAD_CREDIT, wait)? {
            return Ok(false);
        }
        self.check = check;
        let piece = Piece {
            bytes,
            end_message,
            end_stream,
        };
        self.handle
            .send(Command::Write {
                call: self.id,
                piece,
            })
            .map_err(|_| CallError::Closed)?;
        Ok(true)
    }

    /// Writes bytes, blocking while the connection pushes back.
    pub fn write(&mut self, bytes: impl Into<Bytes>) -> Result<(), CallError> {
        self.push(bytes.into(), false, false, true).map(|_| ())
    }

    /// Writes one message (spec §7), blocking while the connection pushes back.
    pub fn write_message(&mut self, bytes: impl Into<Bytes>) -> Result<(), CallError> {
        self.push(bytes.into(), true, false, true).map(|_| ())
    }

    /// Writes bytes if the connection can take them now; `Ok(false)` means
    /// try again later (nothing was written).
    pub fn try_write(&mut self, bytes: impl Into<Bytes>) -> Result<bool, CallError> {
        self.push(bytes.into(), false, false, false)
    }

    /// Sends what an async write left queued (the call itself first, if the
    /// command queue had no room for it): `Pending` while the queue is full.
    fn poll_queued(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        if let Some(call) = self.call.as_mut() {
            if let Some(unsent) = call.unsent.take() {
                call.unsent = unsent.poll_send(&self.handle, cx);
                if call.unsent.is_some() {
                    return Poll::Pending;
                }
            }
        }
        if let Some(command) = self.queued.take() {
            match self.handle.poll_send(cx, command) {
                SendPoll::Sent => {}
                SendPoll::Full(command) => {
                    self.queued = Some(command);
                    return Poll::Pending;
                }
                SendPoll::Closed(_) => return Poll::Ready(Err(CallError::Closed)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes a piece without blocking: `Pending` while flow control (or a
    /// full command queue) pushes back.
    fn poll_piece(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        (end_message, end_stream): (bool, bool),
    ) -> Poll<Result<usize, CallError>> {
        if let Poll::Ready(Err(err)) = self.poll_queued(cx) {
            return Poll::Ready(Err(err));
        }
        if self.queued.is_some() || self.call.as_ref().is_some_and(|c| c.unsent.is_some()) {
            return Poll::Pending;
        }
        let mut check = self.check;
        check.add(bytes.len())?;
        if end_stream {
            check.finish()?;
        }
        match self
            .credit
            .poll_acquire(bytes.len(), UPLOAD_CREDIT, cx.waker())
        {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Ready(Ok(())) => {}
        }
        self.check = check;
        // The bytes are taken now; a full queue only delays their command.
        self.queued = Some(Command::Write {
            call: self.id,
            piece: Piece {
                bytes: Bytes::copy_from_slice(bytes),
                end_message,
                end_stream,
            },
        });
        if let Poll::Ready(Err(err)) = self.poll_queued(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(bytes.len()))
    }

    /// Writes one message (spec §7) as a future: the task, not the thread,
    /// waits while the connection pushes back.
    pub async fn write_message_async(
        &mut self,
        message: impl Into<Bytes>,
    ) -> Result<(), CallError> {
        let message = message.into();
        std::future::poll_fn(|cx| {
            self.poll_piece(cx, &message, (true, false))
                .map(|r| r.map(drop))
        })
        .await
    }

    /// Ends the body without blocking and awaits the reply: the async form
    /// of [`Upload::finish`] followed by the call.
    pub async fn finish_async(mut self) -> Result<Reply, CallError> {
        std::future::poll_fn(|cx| {
            if self.ended {
                return self.poll_queued(cx);
            }
            match self.poll_piece(cx, &[], (false, true)) {
                Poll::Ready(Ok(_)) => {
                    self.ended = true;
                    self.poll_queued(cx)
                }
                Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        match self.call.take() {
            Some(call) => call.await,
            None => Err(CallError::Closed),
        }
    }

    /// Ends the body; the returned [`Call`] yields the reply. After a write
    /// failed because the call already ended (the server answered early, or
    /// the connection was lost), the call still comes back: its outcome says
    /// why.
    ///
    /// An upload that declared its length and wrote fewer bytes fails with
    /// [`CallError::BodyLength`] and is cancelled: a short body is never sent
    /// as whole.
    pub fn finish(mut self) -> Result<Call, CallError> {
        if let Err(mismatch) = self.check.finish() {
            if let Some(call) = self.call.take() {
                call.cancel();
            }
            return Err(mismatch.into());
        }
        // A failed end means the call ended or the loop is gone; either way
        // the call's own outcome tells the caller what happened.
        let _ = self.push(Bytes::new(), false, true, true);
        self.call.take().ok_or(CallError::Closed)
    }
}

/// An upload as a byte sink for async code: writes wait (the task, not the
/// thread) while flow control pushes back; `poll_close` ends the body.
/// [`Upload::finish_async`] ends it and gives the reply.
impl futures_io::AsyncWrite for Upload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let piece = buf.get(..buf.len().min(UPLOAD_CREDIT)).unwrap_or(buf);
        self.poll_piece(cx, piece, (false, false))
            .map_err(Into::into)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_queued(cx).map_err(Into::into)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.ended {
            match self.poll_piece(cx, &[], (false, true)) {
                Poll::Ready(Ok(_)) => self.ended = true,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.poll_queued(cx).map_err(Into::into)
    }
}
