// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title SumTree
/// @notice Merkle sum tree verification, bit-for-bit the encoding of `settlement/sum_tree.py`.
/// @dev Two trees per asset: claims (what the vault owes each account) and liabilities (what each account owes).
/// Encoding (all big-endian, `abi.encodePacked`):
///   claim leaf     = keccak256(0x00 ‖ account (20 B) ‖ token (20 B) ‖ amount (uint256, 32 B))     73 bytes
///   liability leaf = keccak256(0x02 ‖ account (20 B) ‖ token (20 B) ‖ amount (uint256, 32 B))     73 bytes
///   node  = keccak256(0x01 ‖ leftHash (32 B) ‖ leftSum (32 B) ‖ rightHash (32 B) ‖ rightSum (32 B)) 129 bytes
///   sum(node) = leftSum + rightSum, which must not overflow uint256.
/// Leaves and nodes carry different one-byte prefixes (and different lengths), so a node can never pose
/// as a leaf, and a claim leaf can never pose as a liability leaf (or the reverse). A level with an odd number of entries is padded with the EMPTY node (hash 0, sum 0); every
/// leaf therefore sits at the same depth `d = ceil(log2(n))` and a proof is exactly `d` siblings, the
/// i-th sibling being on the left when bit i of the leaf index is 1. A tree with one leaf has the leaf
/// hash as its root and an empty proof; the empty tree has root 0 and total 0 (nothing verifies).
/// A node's own sum is not in its hash but in its parent's, and the verifier recomputes every sum from
/// the leaf up and requires the root's sum to equal the committed total: since amounts are unsigned,
/// the leaves a valid proof can reach partition the total, and no subset claims more than it.
library SumTree {
    /// @notice A sibling on a proof path: its hash and the sum of the leaves under it.
    struct Node {
        bytes32 hash;
        uint256 sum;
    }

    /// @notice Longest proof accepted (2^48 leaves per asset is far beyond any venue).
    uint256 internal constant MAX_DEPTH = 48;
    /// @notice Leaf prefix of the claims trees.
    uint8 internal constant CLAIM = 0;
    /// @notice Leaf prefix of the liabilities trees.
    uint8 internal constant LIABILITY = 2;

    /// @notice Hash of a claim leaf.
    function leafHash(address account, address token, uint256 amount) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(CLAIM, account, token, amount));
    }

    /// @notice Hash of a liability leaf.
    function liabilityLeafHash(address account, address token, uint256 amount)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encodePacked(LIABILITY, account, token, amount));
    }

    /// @notice Hash of an inner node from its children.
    function nodeHash(bytes32 leftHash, uint256 leftSum, bytes32 rightHash, uint256 rightSum)
        internal
        pure
        returns (bytes32 h)
    {
        // Same bytes as keccak256(abi.encodePacked(uint8(1), leftHash, leftSum, rightHash, rightSum)),
        // written in scratch memory past the free pointer (not bumped: nothing else is allocated here).
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore8(p, 1)
            mstore(add(p, 1), leftHash)
            mstore(add(p, 33), leftSum)
            mstore(add(p, 65), rightHash)
            mstore(add(p, 97), rightSum)
            h := keccak256(p, 129)
        }
    }

    /// @notice Walks a proof from a leaf to the root.
    /// @return root the recomputed root hash
    /// @return sum the recomputed root sum
    /// @return ok false when the proof is malformed (too long, index out of range, sum overflow)
    function computeRoot(bytes32 leaf, uint256 amount, uint256 index, Node[] calldata proof)
        internal
        pure
        returns (bytes32 root, uint256 sum, bool ok)
    {
        uint256 depth = proof.length;
        if (depth > MAX_DEPTH || (index >> depth) != 0) return (bytes32(0), 0, false);
        root = leaf;
        sum = amount;
        for (uint256 i; i < depth; ++i) {
            Node calldata sib = proof[i];
            uint256 s = sib.sum;
            unchecked {
                if (s > type(uint256).max - sum) return (bytes32(0), 0, false);
            }
            if ((index >> i) & 1 == 0) {
                root = nodeHash(root, sum, sib.hash, s);
            } else {
                root = nodeHash(sib.hash, s, root, sum);
            }
            unchecked {
                sum += s;
            }
        }
        ok = true;
    }

    /// @notice True when the leaf hashing to `leaf` with `amount` is leaf `index` of the tree (`root`, `total`).
    function verifyLeaf(
        bytes32 root,
        uint256 total,
        bytes32 leaf,
        uint256 amount,
        uint256 index,
        Node[] calldata proof
    ) internal pure returns (bool) {
        (bytes32 r, uint256 s, bool ok) = computeRoot(leaf, amount, index, proof);
        return ok && r == root && s == total && root != bytes32(0);
    }

    /// @notice True when claim `(account, token, amount)` is leaf `index` of the tree with `root` and `total`.
    function verify(
        bytes32 root,
        uint256 total,
        address account,
        address token,
        uint256 amount,
        uint256 index,
        Node[] calldata proof
    ) internal pure returns (bool) {
        return verifyLeaf(root, total, leafHash(account, token, amount), amount, index, proof);
    }
}
