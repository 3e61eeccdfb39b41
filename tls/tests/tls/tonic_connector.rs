//! A tonic client reaches a tonic service inside an axum router through `TlsConnector` and
//! `TlsListener`, with mutual TLS, and the service sees the client's certname.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use bytes::{Buf, BufMut};
use http::uri::PathAndQuery;
use porch_tls::dev_ca::Validity;
use porch_tls::{PeerInfo, TlsConnector, TlsIdentity, TlsListener, describe_tls_error};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status};

use crate::common::{NODE, Pki};

const WHO_AM_I: &str = "/porch.test.Who/AmI";

/// Messages are UTF-8 strings: enough for a call without generated code.
#[derive(Clone, Copy, Default)]
struct StringCodec;

impl Codec for StringCodec {
    type Encode = String;
    type Decode = String;
    type Encoder = StringCodec;
    type Decoder = StringCodec;
    fn encoder(&mut self) -> StringCodec {
        StringCodec
    }
    fn decoder(&mut self) -> StringCodec {
        StringCodec
    }
}

impl Encoder for StringCodec {
    type Item = String;
    type Error = Status;
    fn encode(&mut self, item: String, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

impl Decoder for StringCodec {
    type Item = String;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<String>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| Status::invalid_argument("not UTF-8"))
    }
}

/// Answers with the certname tonic's request extensions carry.
struct WhoAmI;

impl tonic::server::UnaryService<String> for WhoAmI {
    type Response = String;
    type Future = Pin<Box<dyn Future<Output = Result<Response<String>, Status>> + Send>>;
    fn call(&mut self, request: Request<String>) -> Self::Future {
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<PeerInfo>>()
            .map(|info| info.0.clone());
        Box::pin(async move {
            let peer = peer.ok_or_else(|| Status::internal("no ConnectInfo<PeerInfo>"))?;
            Ok(Response::new(
                peer.certname.unwrap_or_else(|| "(none)".into()),
            ))
        })
    }
}

async fn serve_grpc(identity: std::sync::Arc<TlsIdentity>) -> std::net::SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let service = tower::service_fn(|request: http::Request<axum::body::Body>| async move {
        let mut grpc = tonic::server::Grpc::new(StringCodec);
        Ok::<_, Infallible>(grpc.unary(WhoAmI, request).await)
    });
    let app = axum::Router::new().route_service(WHO_AM_I, service);
    tokio::spawn(async move {
        axum::serve(
            TlsListener::new(tcp, identity),
            app.into_make_service_with_connect_info::<PeerInfo>(),
        )
        .await
    });
    addr
}

async fn call_who_am_i(channel: tonic::transport::Channel) -> Result<String, Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = PathAndQuery::from_static(WHO_AM_I);
    let response = client
        .unary(Request::new(String::new()), path, StringCodec)
        .await?;
    Ok(response.into_inner())
}

#[tokio::test]
async fn tonic_client_reaches_the_server_by_certname_with_mutual_tls() {
    let pki = Pki::new();
    let addr = serve_grpc(pki.node()).await;
    let peer = TlsIdentity::load(pki.issue("node2.porch.test", Validity::default())).unwrap();
    // The URI is the address; the certificate is checked against the member's certname.
    let connector = TlsConnector::new(peer).with_server_name(NODE).unwrap();
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap();
    assert_eq!(call_who_am_i(channel).await.unwrap(), "node2.porch.test");
}

#[tokio::test]
async fn tonic_client_refuses_a_server_with_another_certname() {
    let pki = Pki::new();
    let addr = serve_grpc(pki.node()).await;
    let peer = TlsIdentity::load(pki.issue("node2.porch.test", Validity::default())).unwrap();
    let connector = TlsConnector::new(peer)
        .with_server_name("node3.porch.test")
        .unwrap();
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector_lazy(connector);
    let mut client = tonic::client::Grpc::new(channel);
    let status = match client.ready().await {
        Err(error) => Status::from_error(Box::new(error)),
        Ok(()) => client
            .unary(
                Request::new(String::new()),
                PathAndQuery::from_static(WHO_AM_I),
                StringCodec,
            )
            .await
            .unwrap_err(),
    };
    let described = describe_tls_error(&status);
    assert_eq!(
        described.as_deref(),
        Some(
            "the server's certificate is for node1.porch.test, 127.0.0.1, localhost, \
             not node3.porch.test"
        ),
        "status: {status:?}"
    );
}
