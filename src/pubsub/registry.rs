//! Who is subscribed to what: channels, patterns and shard channels, each with its list of
//! subscribers.
//!
//! A channel's subscriber list is an `Arc<Vec<..>>` copied on write: a publication takes a
//! snapshot by cloning the `Arc` (O(1), under the registry lock), and fan-out then walks the
//! snapshot without any lock. A position index makes unsubscribe O(1) (swap-remove).

use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashMap;

use crate::clients::{ClientEntry, Kind};

pub type Subscribers = Arc<Vec<Arc<ClientEntry>>>;

#[derive(Default)]
pub struct SubscriberList {
    list: Subscribers,
    position: HashMap<u64, usize>,
}

impl SubscriberList {
    /// Adds the client; false if it was already there.
    fn add(&mut self, client: &Arc<ClientEntry>) -> bool {
        if self.position.contains_key(&client.id) {
            return false;
        }
        let list = Arc::make_mut(&mut self.list);
        self.position.insert(client.id, list.len());
        list.push(Arc::clone(client));
        true
    }

    /// Removes the client; false if it was not there.
    fn remove(&mut self, client_id: u64) -> bool {
        let Some(at) = self.position.remove(&client_id) else {
            return false;
        };
        let list = Arc::make_mut(&mut self.list);
        list.swap_remove(at);
        if let Some(moved) = list.get(at) {
            self.position.insert(moved.id, at);
        }
        true
    }

    pub fn snapshot(&self) -> Subscribers {
        Arc::clone(&self.list)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[derive(Default)]
pub struct Registry {
    pub channels: HashMap<Bytes, SubscriberList>,
    pub patterns: HashMap<Bytes, SubscriberList>,
    /// Shard channels (`SSUBSCRIBE`): a namespace of their own, reached only by `SPUBLISH`
    /// and presence events on `presence:{<user>}`.
    pub shard_channels: HashMap<Bytes, SubscriberList>,
    /// Total channel and pattern subscriptions of all clients.
    pub subscription_count: usize,
    /// Total shard channel subscriptions of all clients.
    pub shard_subscription_count: usize,
    /// Bytes of distinct channel, pattern and shard channel names held.
    pub name_bytes: usize,
}

impl Registry {
    fn table(&mut self, kind: Kind) -> &mut HashMap<Bytes, SubscriberList> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard_channels,
        }
    }

    /// The subscriber lists of one kind, to read.
    pub fn lists(&self, kind: Kind) -> &HashMap<Bytes, SubscriberList> {
        match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shard_channels,
        }
    }

    fn count(&mut self, kind: Kind) -> &mut usize {
        match kind {
            Kind::Channel | Kind::Pattern => &mut self.subscription_count,
            Kind::Shard => &mut self.shard_subscription_count,
        }
    }

    pub fn subscribe(&mut self, kind: Kind, name: &Bytes, client: &Arc<ClientEntry>) -> bool {
        let table = self.table(kind);
        let mut new_name = false;
        let added = table
            .entry(name.clone())
            .or_insert_with(|| {
                new_name = true;
                SubscriberList::default()
            })
            .add(client);
        if new_name {
            self.name_bytes += name.len();
        }
        if added {
            *self.count(kind) += 1;
        }
        added
    }

    pub fn unsubscribe(&mut self, kind: Kind, name: &[u8], client_id: u64) -> bool {
        let table = self.table(kind);
        let Some(list) = table.get_mut(name) else {
            return false;
        };
        let removed = list.remove(client_id);
        let now_empty = list.is_empty();
        if now_empty {
            table.remove(name);
            self.name_bytes -= name.len();
        }
        if removed {
            *self.count(kind) -= 1;
        }
        removed
    }
}
