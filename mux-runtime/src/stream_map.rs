//! [`StreamMap`]: per-stream application state keyed by connection and
//! stream, with the clean-up every app needs when a connection closes. Used
//! by the server (requests being received, feeds) and the client (calls in
//! flight, pushes being received).

use foldhash::HashMap;
use mux_core::StreamId;

use crate::event_loop::ConnKey;

/// Values per `(connection, stream)`.
#[derive(Debug)]
pub struct StreamMap<V> {
    map: HashMap<(ConnKey, StreamId), V>,
}

impl<V> Default for StreamMap<V> {
    fn default() -> Self {
        Self {
            map: HashMap::default(),
        }
    }
}

impl<V> StreamMap<V> {
    /// Stores `value` for the stream, returning the one it replaces.
    pub fn insert(&mut self, key: ConnKey, id: StreamId, value: V) -> Option<V> {
        self.map.insert((key, id), value)
    }

    /// The stream's value.
    pub fn get(&self, key: ConnKey, id: StreamId) -> Option<&V> {
        self.map.get(&(key, id))
    }

    /// The stream's value, mutably.
    pub fn get_mut(&mut self, key: ConnKey, id: StreamId) -> Option<&mut V> {
        self.map.get_mut(&(key, id))
    }

    /// Whether the stream has a value.
    pub fn contains(&self, key: ConnKey, id: StreamId) -> bool {
        self.map.contains_key(&(key, id))
    }

    /// Takes the stream's value out.
    pub fn remove(&mut self, key: ConnKey, id: StreamId) -> Option<V> {
        self.map.remove(&(key, id))
    }

    /// Takes out every value of connection `key` (it closed).
    pub fn remove_conn(&mut self, key: ConnKey) -> Vec<(StreamId, V)> {
        let ids: Vec<StreamId> = self
            .map
            .keys()
            .filter(|(k, _)| *k == key)
            .map(|(_, id)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.map.remove(&(key, id)).map(|value| (id, value)))
            .collect()
    }

    /// Every stream with a value.
    pub fn keys(&self) -> impl Iterator<Item = (ConnKey, StreamId)> + '_ {
        self.map.keys().copied()
    }

    /// Every value, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.map.values_mut()
    }

    /// Streams with a value.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no stream has a value.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: usize) -> ConnKey {
        ConnKey {
            index,
            generation: 1,
        }
    }

    fn id(value: u32) -> StreamId {
        StreamId::new(value).expect("a valid stream ID")
    }

    #[test]
    fn a_closed_connection_takes_only_its_own_streams() {
        let mut map = StreamMap::default();
        map.insert(key(0), id(1), "a");
        map.insert(key(0), id(3), "b");
        map.insert(key(1), id(1), "c");
        let mut taken = map.remove_conn(key(0));
        taken.sort();
        assert_eq!(taken, vec![(id(1), "a"), (id(3), "b")]);
        assert_eq!(map.len(), 1);
        assert_eq!(map.get(key(1), id(1)), Some(&"c"));
        assert!(map.remove_conn(key(0)).is_empty());
    }

    #[test]
    fn a_reused_slot_is_another_connection() {
        let mut map = StreamMap::default();
        map.insert(key(0), id(1), 1);
        let next = ConnKey {
            index: 0,
            generation: 2,
        };
        assert!(!map.contains(next, id(1)));
        assert_eq!(map.remove(key(0), id(1)), Some(1));
        assert!(map.is_empty());
    }
}
