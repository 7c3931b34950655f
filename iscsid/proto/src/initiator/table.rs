//! Sessions by id in O(1): one slot per session, reused under a new
//! generation so that an old id never finds the session that came after
//! it. Walks go in slot order, the same on every run.

use super::SessionId;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

pub struct Table<T> {
    slots: Vec<Slot<T>>,
    /// Empty slots, the last freed first.
    free: Vec<u32>,
}

impl<T> Table<T> {
    pub fn new() -> Table<T> {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// The id the next `insert` takes.
    pub fn vacant_id(&self) -> SessionId {
        match self.free.last() {
            Some(&i) => SessionId {
                index: i,
                generation: self.slots[i as usize].generation,
            },
            None => SessionId {
                index: u32::try_from(self.slots.len()).unwrap_or(u32::MAX),
                generation: 0,
            },
        }
    }

    /// Stores `value` under `vacant_id()`, which it returns.
    pub fn insert(&mut self, value: T) -> SessionId {
        let id = self.vacant_id();
        match self.free.pop() {
            Some(i) => self.slots[i as usize].value = Some(value),
            None => self.slots.push(Slot {
                generation: 0,
                value: Some(value),
            }),
        }
        id
    }

    fn slot(&self, id: &SessionId) -> Option<&Slot<T>> {
        self.slots
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation)
    }

    pub fn get(&self, id: &SessionId) -> Option<&T> {
        self.slot(id)?.value.as_ref()
    }

    pub fn get_mut(&mut self, id: &SessionId) -> Option<&mut T> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)?
            .value
            .as_mut()
    }

    pub fn remove(&mut self, id: &SessionId) -> Option<T> {
        let slot = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)?;
        let v = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        Some(v)
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.value.as_ref())
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter_map(|s| s.value.as_mut())
    }

    /// The ids of every session, for walks that may change the table.
    pub fn ids(&self) -> Vec<SessionId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| SessionId {
                index: i as u32,
                generation: s.generation,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_slot_does_not_answer_to_the_old_id() {
        let mut t = Table::new();
        let a = t.insert("a");
        let b = t.insert("b");
        assert_eq!(t.remove(&a), Some("a"));
        assert_eq!(t.get(&a), None);
        assert_eq!(t.vacant_id().index, a.index);
        let c = t.insert("c");
        assert_ne!(c, a);
        assert_eq!(t.get(&a), None);
        assert_eq!(t.remove(&a), None);
        assert_eq!(t.get(&c), Some(&"c"));
        assert_eq!(t.ids(), vec![c, b]);
        assert_eq!(t.values().copied().collect::<Vec<_>>(), ["c", "b"]);
    }
}
