//! The environment graph: application instances → components → nodes, and the capability
//! edges between components (a component that consumes or requires `Cap['t']` depends on the
//! component that exports it, across instances too: capabilities are environment-wide).

use crate::ast::Expr;
use crate::environment::Environment;
use crate::error::{LangError, Span};
use crate::eval::{Scope, Value, canonical_type, eval};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
pub struct Component {
    /// `Lamp::Db`
    pub type_name: String,
    pub title: String,
    pub instance: usize,
    pub node: String,
    /// Capabilities exported, as `Sql['lamp-prod']`.
    pub produces: Vec<String>,
    /// Capabilities consumed or required.
    pub consumes: Vec<String>,
    /// Components this one depends on (indices).
    pub depends_on: Vec<usize>,
    pub span: Span,
}

impl Component {
    pub fn display(&self) -> String {
        format!("{}['{}']", self.type_name, self.title)
    }
}

#[derive(Clone, Debug)]
pub struct Instance {
    /// `Lamp`
    pub type_name: String,
    pub title: String,
    /// Its mapped components, in dependency order.
    pub components: Vec<usize>,
    pub span: Span,
}

impl Instance {
    pub fn display(&self) -> String {
        format!("{}['{}']", self.type_name, self.title)
    }

    /// `Lamp[prod]` as the plan prints it.
    pub fn short(&self) -> String {
        format!("{}[{}]", self.type_name, self.title)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub instances: Vec<Instance>,
    pub components: Vec<Component>,
}

/// Metaparameters that are not application parameters.
const META: [&str; 7] = [
    "nodes",
    "require",
    "before",
    "notify",
    "subscribe",
    "export",
    "consume",
];

/// `Cap['title']` strings from an `export`/`consume`/`require` value.
fn refs(value: &Value) -> Vec<(String, String)> {
    match value {
        Value::Ref { type_name, titles } => titles
            .iter()
            .map(|t| (type_name.clone(), t.clone()))
            .collect(),
        Value::Array(items) => items.iter().flat_map(refs).collect(),
        _ => Vec::new(),
    }
}

fn cap(type_name: &str, title: &str) -> String {
    format!("{type_name}['{title}']")
}

struct Pending {
    component: Component,
    consumes: Vec<(String, String, bool, Span)>,
}

impl Environment {
    pub fn graph(&self) -> Result<Graph, LangError> {
        let mut graph = Graph::default();
        let Some((site, _)) = &self.site else {
            return Ok(graph);
        };
        let mut pending: Vec<Pending> = Vec::new();
        let mut seen_instances: BTreeMap<(String, String), Span> = BTreeMap::new();
        for resource in site {
            let type_name = canonical_type(&resource.type_name);
            let Some(definition) = self.applications.get(&type_name) else {
                return Err(LangError::model(
                    &resource.span,
                    format!(
                        "{type_name} is not an application defined in environment {}",
                        self.name
                    ),
                ));
            };
            for body in &resource.bodies {
                let titles: Vec<String> = match eval(&body.title, &Scope::new()) {
                    Value::Str(t) => vec![t],
                    Value::Array(items) => items.iter().filter_map(Value::as_text).collect(),
                    _ => {
                        return Err(LangError::model(
                            &body.span,
                            "an application instance title must be a string",
                        ));
                    }
                };
                for title in titles {
                    if let Some(first) =
                        seen_instances.insert((type_name.clone(), title.clone()), body.span.clone())
                    {
                        return Err(LangError::model(
                            &body.span,
                            format!(
                                "duplicate application instance {type_name}['{title}'] (first declared at {first})"
                            ),
                        ));
                    }
                    let mut scope = Scope::new();
                    scope.insert("name".into(), Value::Str(title.clone()));
                    scope.insert("title".into(), Value::Str(title.clone()));
                    let declared: BTreeSet<&str> = definition
                        .parameters
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect();
                    for attribute in &body.attributes {
                        if !META.contains(&attribute.name.as_str())
                            && !declared.contains(attribute.name.as_str())
                        {
                            return Err(LangError::model(
                                &attribute.span,
                                format!(
                                    "{type_name}['{title}'] has no parameter '{}'",
                                    attribute.name
                                ),
                            ));
                        }
                    }
                    for parameter in &definition.parameters {
                        let given = body.attributes.iter().find(|a| a.name == parameter.name);
                        let value = match (given, &parameter.default) {
                            (Some(a), _) => eval(&a.value, &Scope::new()),
                            (None, Some(default)) => eval(default, &scope),
                            (None, None) => {
                                return Err(LangError::model(
                                    &body.span,
                                    format!(
                                        "{type_name}['{title}'] needs a value for parameter '{}'",
                                        parameter.name
                                    ),
                                ));
                            }
                        };
                        scope.insert(parameter.name.clone(), value);
                    }
                    let instance = graph.instances.len();
                    graph.instances.push(Instance {
                        type_name: type_name.clone(),
                        title: title.clone(),
                        components: Vec::new(),
                        span: body.span.clone(),
                    });
                    let nodes = body.attributes.iter().find(|a| a.name == "nodes");
                    let mapping = node_mapping(
                        nodes.map(|a| (&a.value, &a.span)),
                        &graph.instances[instance],
                    )?;
                    let mut declared_components = BTreeSet::new();
                    for component in &definition.body {
                        let component_type = canonical_type(&component.type_name);
                        for cbody in &component.bodies {
                            let titles = match eval(&cbody.title, &scope) {
                                Value::Str(t) => vec![t],
                                Value::Array(items) => {
                                    items.iter().filter_map(Value::as_text).collect()
                                }
                                _ => {
                                    return Err(LangError::model(
                                        &cbody.span,
                                        format!(
                                            "cannot evaluate the title of this {component_type} component"
                                        ),
                                    ));
                                }
                            };
                            for ctitle in titles {
                                declared_components
                                    .insert((component_type.clone(), ctitle.clone()));
                                let Some((node, _)) =
                                    mapping.get(&(component_type.clone(), ctitle.clone()))
                                else {
                                    continue; // not mapped: absent from the environment graph
                                };
                                let mut produces = Vec::new();
                                let mut consumes = Vec::new();
                                for attribute in &cbody.attributes {
                                    let value = eval(&attribute.value, &scope);
                                    for (cap_type, cap_title) in refs(&value) {
                                        match attribute.name.as_str() {
                                            "export" => produces.push(cap(&cap_type, &cap_title)),
                                            "consume" => consumes.push((
                                                cap_type,
                                                cap_title,
                                                true,
                                                attribute.span.clone(),
                                            )),
                                            "require" => consumes.push((
                                                cap_type,
                                                cap_title,
                                                false,
                                                attribute.span.clone(),
                                            )),
                                            _ => {}
                                        }
                                    }
                                }
                                pending.push(Pending {
                                    component: Component {
                                        type_name: component_type.clone(),
                                        title: ctitle,
                                        instance,
                                        node: node.clone(),
                                        produces,
                                        consumes: Vec::new(),
                                        depends_on: Vec::new(),
                                        span: cbody.span.clone(),
                                    },
                                    consumes,
                                });
                            }
                        }
                    }
                    for ((ctype, ctitle), (_, span)) in &mapping {
                        if !declared_components.contains(&(ctype.clone(), ctitle.clone())) {
                            return Err(LangError::model(
                                span,
                                format!(
                                    "{type_name}['{title}'] maps {ctype}['{ctitle}'] to a node, but the application does not declare that component"
                                ),
                            ));
                        }
                    }
                }
            }
        }
        link(self, graph, pending)
    }
}

type NodeMapping = BTreeMap<(String, String), (String, Span)>;

/// `nodes => { Node['x'] => Comp['t'] | [Comp['a'], ...] }` → component → node.
fn node_mapping(
    nodes: Option<(&Expr, &Span)>,
    instance: &Instance,
) -> Result<NodeMapping, LangError> {
    let mut mapping = NodeMapping::new();
    let Some((expr, span)) = nodes else {
        return Ok(mapping);
    };
    let Value::Hash(pairs) = eval(expr, &Scope::new()) else {
        return Err(LangError::model(
            span,
            "'nodes' must be a hash of Node['certname'] => components",
        ));
    };
    for (key, value) in pairs {
        let node = match key {
            Value::Ref { type_name, titles } if type_name == "Node" && titles.len() == 1 => {
                titles[0].clone()
            }
            _ => {
                return Err(LangError::model(
                    span,
                    "every key of 'nodes' must be Node['certname']",
                ));
            }
        };
        let components = refs(&value);
        if components.is_empty() {
            return Err(LangError::model(
                span,
                format!(
                    "Node['{node}'] must map to components like Lamp::Db['{}']",
                    instance.title
                ),
            ));
        }
        for (ctype, ctitle) in components {
            if let Some((other, _)) = mapping.get(&(ctype.clone(), ctitle.clone())) {
                return Err(LangError::model(
                    span,
                    format!(
                        "{ctype}['{ctitle}'] is mapped to two nodes ({other} and {node}); a component runs on exactly one node"
                    ),
                ));
            }
            mapping.insert((ctype, ctitle), (node.clone(), span.clone()));
        }
    }
    Ok(mapping)
}

/// Resolves capability edges, checks for cycles, and orders each instance's components.
fn link(env: &Environment, mut graph: Graph, pending: Vec<Pending>) -> Result<Graph, LangError> {
    let mut exporters: BTreeMap<String, usize> = BTreeMap::new();
    let mut exported_types: BTreeSet<String> = BTreeSet::new();
    for (index, p) in pending.iter().enumerate() {
        for produced in &p.component.produces {
            if let Some(&other) = exporters.get(produced) {
                return Err(LangError::model(
                    &p.component.span,
                    format!(
                        "{produced} is exported by both {} and {}; a capability has one producer",
                        pending[other].component.display(),
                        p.component.display()
                    ),
                ));
            }
            exporters.insert(produced.clone(), index);
            exported_types.insert(produced.split('[').next().unwrap_or("").to_string());
        }
    }
    let mut components = Vec::with_capacity(pending.len());
    for p in &pending {
        let mut component = p.component.clone();
        for (cap_type, cap_title, is_consume, span) in &p.consumes {
            let key = cap(cap_type, cap_title);
            let is_capability =
                env.capability_types.contains(cap_type) || exported_types.contains(cap_type);
            match exporters.get(&key) {
                Some(&producer) => {
                    component.consumes.push(key);
                    component.depends_on.push(producer);
                }
                None if *is_consume || is_capability => {
                    return Err(LangError::model(
                        span,
                        format!(
                            "{} consumes {key}, which no component in the environment exports",
                            component.display()
                        ),
                    ));
                }
                None => {} // an ordinary `require` of a non-capability resource
            }
        }
        component.depends_on.sort_unstable();
        component.depends_on.dedup();
        components.push(component);
    }
    let order = topological_order(&components)?;
    for &index in &order {
        let instance = components[index].instance;
        graph.instances[instance].components.push(index);
    }
    graph.components = components;
    Ok(graph)
}

/// Components in dependency order; a cycle is an error naming it.
fn topological_order(components: &[Component]) -> Result<Vec<usize>, LangError> {
    let count = components.len();
    let mut remaining: Vec<usize> = components.iter().map(|c| c.depends_on.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (i, c) in components.iter().enumerate() {
        for &d in &c.depends_on {
            dependents[d].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..count).filter(|&i| remaining[i] == 0).collect();
    let mut order = Vec::with_capacity(count);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() == count {
        return Ok(order);
    }
    // Walk stuck dependencies until one repeats: that is a cycle.
    let start = (0..count).find(|&i| remaining[i] > 0).unwrap_or(0);
    let mut position = vec![usize::MAX; count];
    let mut walk = Vec::new();
    let mut current = start;
    while position[current] == usize::MAX {
        position[current] = walk.len();
        walk.push(current);
        match components[current]
            .depends_on
            .iter()
            .copied()
            .find(|&d| remaining[d] > 0)
        {
            Some(next) => current = next,
            None => break,
        }
    }
    let from = position[current].min(walk.len().saturating_sub(1));
    let mut names: Vec<String> = walk[from..]
        .iter()
        .rev()
        .map(|&i| components[i].display())
        .collect();
    if let Some(first) = names.first().cloned() {
        names.push(first);
    }
    Err(LangError::Cycle(format!(
        "{} (at {})",
        names.join(" -> "),
        components[walk[from]].span
    )))
}
