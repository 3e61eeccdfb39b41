//! The session protocol's protobuf codec with small buffers.
//!
//! An orchestrator node holds one session per managed host — tens of thousands — and tonic's
//! default codec reserves 8 KiB to encode and 8 KiB to decode on every stream. Session
//! messages are small (a heartbeat is a few bytes, a result at most ~16 KiB); the buffers grow
//! when a larger message needs it, so small initial buffers cost nothing but a rare resize.

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial encode/decode buffer per stream.
pub const STREAM_BUFFER_BYTES: usize = 512;
/// Encoded bytes a stream gathers before yielding them to the transport (tonic's default).
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

pub struct SmallBufferCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        SmallBufferCodec(std::marker::PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(STREAM_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
