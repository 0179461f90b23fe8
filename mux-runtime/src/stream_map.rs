//! [`StreamMap`]: per-stream application state keyed by connection and
//! stream, with the clean-up every app needs when a connection closes. Used
//! by the server (requests being received, feeds) and the client (calls in
//! flight, pushes being received).

use foldhash::HashMap;
use mux_core::StreamId;
use slab::Slab;

use crate::event_loop::ConnKey;

/// Values per `(connection, stream)`.
///
/// The values live in a slab and the hash table holds only their index: a
/// table keeps up to half its slots empty (it doubles when seven eighths
/// are taken) and writes its entries all over its allocation, so every slot
/// costs memory, where a slab's unused room past its last value is never
/// touched. With values of a couple of hundred bytes (a request being
/// received) that is most of what an idle stream costs the server.
#[derive(Debug)]
pub struct StreamMap<V> {
    index: HashMap<(ConnKey, StreamId), usize>,
    values: Slab<V>,
}

impl<V> Default for StreamMap<V> {
    fn default() -> Self {
        Self {
            index: HashMap::default(),
            values: Slab::new(),
        }
    }
}

impl<V> StreamMap<V> {
    /// Stores `value` for the stream, returning the one it replaces.
    pub fn insert(&mut self, key: ConnKey, id: StreamId, value: V) -> Option<V> {
        if let Some(old) = self.get_mut(key, id) {
            return Some(std::mem::replace(old, value));
        }
        let slot = self.values.insert(value);
        self.index.insert((key, id), slot);
        None
    }

    /// The stream's value.
    #[inline]
    pub fn get(&self, key: ConnKey, id: StreamId) -> Option<&V> {
        let slot = *self.index.get(&(key, id))?;
        self.values.get(slot)
    }

    /// The stream's value, mutably.
    #[inline]
    pub fn get_mut(&mut self, key: ConnKey, id: StreamId) -> Option<&mut V> {
        let slot = *self.index.get(&(key, id))?;
        self.values.get_mut(slot)
    }

    /// Whether the stream has a value.
    #[inline]
    pub fn contains(&self, key: ConnKey, id: StreamId) -> bool {
        self.index.contains_key(&(key, id))
    }

    /// Takes the stream's value out.
    pub fn remove(&mut self, key: ConnKey, id: StreamId) -> Option<V> {
        let slot = self.index.remove(&(key, id))?;
        self.values.try_remove(slot)
    }

    /// Takes out every value of connection `key` (it closed).
    pub fn remove_conn(&mut self, key: ConnKey) -> Vec<(StreamId, V)> {
        let ids: Vec<StreamId> = self
            .index
            .keys()
            .filter(|(k, _)| *k == key)
            .map(|(_, id)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.remove(key, id).map(|value| (id, value)))
            .collect()
    }

    /// Every stream with a value.
    pub fn keys(&self) -> impl Iterator<Item = (ConnKey, StreamId)> + '_ {
        self.index.keys().copied()
    }

    /// Every value, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.values.iter_mut().map(|(_, value)| value)
    }

    /// Streams with a value.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no stream has a value.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
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
    fn values_follow_their_streams_through_replacements_and_removals() {
        let mut map = StreamMap::default();
        for n in 0..8 {
            assert_eq!(map.insert(key(0), id(2 * n + 1), n), None);
        }
        assert_eq!(map.insert(key(0), id(5), 20), Some(2));
        assert_eq!(map.remove(key(0), id(1)), Some(0));
        assert_eq!(map.remove(key(0), id(1)), None);
        assert_eq!(map.insert(key(1), id(1), 30), None);
        for value in map.values_mut() {
            *value += 100;
        }
        assert_eq!(map.get(key(0), id(5)), Some(&120));
        assert_eq!(map.get(key(1), id(1)), Some(&130));
        assert_eq!(map.get(key(0), id(15)), Some(&107));
        assert_eq!(map.len(), 8);
        let mut values: Vec<_> = map.keys().filter_map(|(k, i)| map.get(k, i)).collect();
        values.sort();
        assert_eq!(values, vec![&101, &103, &104, &105, &106, &107, &120, &130]);
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
