//! The matching index over the ExternalSecret watch: which ExternalSecrets read a secret.

use std::sync::{Arc, RwLock};

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use secret_bridge::matching::MatchIndex;

use crate::api::ExternalSecret;

/// Shared between the watch that fills it and the consumer that reads it.
#[derive(Clone, Default)]
pub struct ExternalSecretIndex(Arc<RwLock<MatchIndex<ObjectRef<ExternalSecret>>>>);

impl ExternalSecretIndex {
    pub fn apply(&self, event: &watcher::Event<ExternalSecret>) {
        let mut index = self.0.write().expect("index lock");
        match event {
            watcher::Event::Apply(es) | watcher::Event::InitApply(es) => {
                index.upsert(ObjectRef::from_obj(es), es.remote_keys());
            }
            watcher::Event::Delete(es) => index.remove(&ObjectRef::from_obj(es)),
            watcher::Event::Init => index.begin_relist(),
            watcher::Event::InitDone => index.finish_relist(),
        }
    }

    pub fn lookup<'i>(
        &self,
        secret_ids: impl IntoIterator<Item = &'i str>,
    ) -> Vec<ObjectRef<ExternalSecret>> {
        self.0
            .read()
            .expect("index lock")
            .lookup(secret_ids)
            .into_iter()
            .collect()
    }
}
