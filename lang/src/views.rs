//! JSON for PE's environment endpoints.

use crate::environment::Environment;
use crate::error::LangError;
use crate::eval::{Scope, Value, eval};
use serde_json::{Value as Json, json};

fn to_json(value: &Value) -> Json {
    match value {
        Value::Str(s) => json!(s),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Ref { type_name, titles } => json!(format!("{type_name}[{}]", titles.join(", "))),
        Value::Hash(_) | Value::Unknown => json!("<expression>"),
        Value::Undef => Json::Null,
    }
}

/// `GET /environments/:env/applications`
pub fn applications_json(env: &Environment) -> Result<Json, LangError> {
    let graph = env.graph()?;
    let items: Vec<Json> = env
        .applications
        .iter()
        .map(|(name, def)| {
            let parameters: serde_json::Map<String, Json> = def
                .parameters
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.default
                            .as_ref()
                            .map(|d| to_json(&eval(d, &Scope::new())))
                            .unwrap_or(Json::Null),
                    )
                })
                .collect();
            let instances: Vec<Json> = graph
                .instances
                .iter()
                .filter(|i| &i.type_name == name)
                .map(|i| json!({"id": i.short()}))
                .collect();
            json!({
                "name": name,
                "kind": "application",
                "file": def.span.file,
                "line": def.span.line,
                "parameters": parameters,
                "instances": instances,
            })
        })
        .collect();
    Ok(json!({"items": items}))
}

/// `GET /environments/:env/instances`: components in topological order.
pub fn instances_json(env: &Environment, filter: Option<&str>) -> Result<Json, LangError> {
    let graph = env.graph()?;
    let wanted = filter
        .map(crate::plan::parse_application_target)
        .transpose()?;
    let items: Vec<Json> = graph
        .instances
        .iter()
        .filter(|i| wanted.as_ref().is_none_or(|(app, title)| &i.type_name == app && title.as_ref().is_none_or(|t| &i.title == t)))
        .map(|instance| {
            let components: Vec<Json> = instance
                .components
                .iter()
                .map(|&c| {
                    let c = &graph.components[c];
                    json!({"type": c.type_name, "title": c.title, "node": c.node, "produces": c.produces, "consumes": c.consumes})
                })
                .collect();
            json!({"type": instance.type_name, "title": instance.title, "components": components})
        })
        .collect();
    Ok(json!({"items": items}))
}
