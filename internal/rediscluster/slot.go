// Package rediscluster is what the processes need to run on a Redis
// Cluster as well as on one Redis: the slot of a key, which error replies
// prove a command did not run (and the retry of those), counters of the
// cluster's error replies by kind, and the readiness check that every
// master answers and the cluster state is ok.
//
// rueidis decides which kind of server it talks to: a client made from a
// single address falls back to a standalone client when the server has
// cluster support disabled, so everything here also works, and does the
// plain thing, on one Redis.
package rediscluster

// Slots is the number of hash slots of a Redis Cluster.
const Slots = 16384

// Slot is the hash slot of key: CRC16 (XMODEM) of its hash tag, the part
// between the first '{' and the next '}' when that part is not empty, else
// of the whole key, modulo 16384 (the Redis Cluster specification's
// HASH_SLOT).
func Slot(key string) uint16 {
	for i := 0; i < len(key); i++ {
		if key[i] != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j > i+1 {
					key = key[i+1 : j]
				}
				return crc16(key) & (Slots - 1)
			}
		}
		break
	}
	return crc16(key) & (Slots - 1)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0).
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^s[i]]
	}
	return crc
}

var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
