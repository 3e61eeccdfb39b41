//! porch-agent (being written): the agent side of the session protocol in `proto/agent.proto`.

/// Generated gRPC code for the agent protocol.
pub mod proto {
    tonic::include_proto!("porch.agent.v1");
}
