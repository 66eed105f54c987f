// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SumTree} from "./libraries/SumTree.sol";

/// @title SumTreeVerifier
/// @notice Stateless view of the SumTree library, for auditors, for accounts checking both of their leaves (claims
///         and liabilities) against a batch's roots, and for the Python cross-checks.
contract SumTreeVerifier {
    /// @notice Hash of a leaf (see SumTree).
    /// @param account the account
    /// @param token the token
    /// @param amount the amount
    /// @return the leaf hash
    function leafHash(address account, address token, uint256 amount) external pure returns (bytes32) {
        return SumTree.leafHash(account, token, amount);
    }

    /// @notice Hash of a liability leaf (see SumTree).
    /// @param account the account
    /// @param token the token
    /// @param amount the amount owed
    /// @return the leaf hash
    function liabilityLeafHash(address account, address token, uint256 amount)
        external
        pure
        returns (bytes32)
    {
        return SumTree.liabilityLeafHash(account, token, amount);
    }

    /// @notice Hash of an inner node (see SumTree).
    /// @param leftHash left child hash
    /// @param leftSum left child sum
    /// @param rightHash right child hash
    /// @param rightSum right child sum
    /// @return the node hash
    function nodeHash(bytes32 leftHash, uint256 leftSum, bytes32 rightHash, uint256 rightSum)
        external
        pure
        returns (bytes32)
    {
        return SumTree.nodeHash(leftHash, leftSum, rightHash, rightSum);
    }

    /// @notice Recompute the root and sum from a leaf and its proof.
    /// @param account the account
    /// @param token the token
    /// @param amount the amount
    /// @param index the leaf index
    /// @param proof sibling (hash, sum) pairs from the leaf up
    /// @return root the root hash
    /// @return sum the root sum
    /// @return ok whether the proof was well formed
    function computeRoot(
        address account,
        address token,
        uint256 amount,
        uint256 index,
        SumTree.Node[] calldata proof
    ) external pure returns (bytes32 root, uint256 sum, bool ok) {
        return SumTree.computeRoot(SumTree.leafHash(account, token, amount), amount, index, proof);
    }

    /// @notice Whether a leaf verifies against `root` and `total`.
    /// @param root the root
    /// @param total the committed total
    /// @param account the account
    /// @param token the token
    /// @param amount the amount
    /// @param index the leaf index
    /// @param proof sibling (hash, sum) pairs from the leaf up
    /// @return whether it verifies
    function verify(
        bytes32 root,
        uint256 total,
        address account,
        address token,
        uint256 amount,
        uint256 index,
        SumTree.Node[] calldata proof
    ) external pure returns (bool) {
        return SumTree.verify(root, total, account, token, amount, index, proof);
    }

    /// @notice Whether liability `(account, token, amount)` is leaf `index` of the liabilities tree (`root`, `total`).
    /// @param root the liabilities root
    /// @param total the committed liabilities total
    /// @param account the account
    /// @param token the token
    /// @param amount the amount owed
    /// @param index the leaf index
    /// @param proof sibling (hash, sum) pairs from the leaf up
    /// @return whether it verifies
    function verifyLiability(
        bytes32 root,
        uint256 total,
        address account,
        address token,
        uint256 amount,
        uint256 index,
        SumTree.Node[] calldata proof
    ) external pure returns (bool) {
        return SumTree.verifyLeaf(
            root, total, SumTree.liabilityLeafHash(account, token, amount), amount, index, proof
        );
    }
}
