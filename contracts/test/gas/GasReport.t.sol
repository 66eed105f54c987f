// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {console} from "forge-std/console.sol";
import {Vm} from "forge-std/Vm.sol";

import {ClearingHouse} from "../../src/ClearingHouse.sol";
import {SumTree} from "../../src/libraries/SumTree.sol";
import {HxBase} from "../helpers/HxBase.sol";

/// @notice Gas of `submitBatch` vs withdrawals per batch and of `escapeWithdraw` vs tree depth, measured
///         with cold accounts and storage (`vm.cool`), as a fresh transaction would see them.
///         `exec` is the call's execution gas; `tx` adds the 21,000 base and the calldata cost.
///         Run: `forge test --match-contract GasReport -vv`.
contract GasReport is HxBase {
    function _calldataGas(bytes memory data) internal pure returns (uint256 g) {
        g = 21_000;
        for (uint256 i; i < data.length; ++i) {
            g += data[i] == 0 ? 4 : 16;
        }
    }

    function _coolAll() internal {
        vm.cool(address(ch));
        vm.cool(address(vault));
        vm.cool(address(fund));
        vm.cool(address(usdc));
        vm.cool(address(weth));
        vm.cool(address(wbtc));
    }

    function _submitGas(uint256 k) internal returns (uint256 exec, uint256 txGas) {
        _deposit(alice, address(usdc), 1e15);
        _submit();
        for (uint256 i; i < k; ++i) {
            address to = address(uint160(0xA0000000 + i)); // fresh recipients: worst case (new balance slots)
            bal[address(usdc)][alice] -= 1e6;
            pendingW.push(ClearingHouse.Withdrawal(nextWithdrawalId++, to, address(usdc), 1e6));
        }
        ClearingHouse.Batch memory b = _batch();
        b.data = new bytes(0);
        _coolAll();
        vm.prank(operator);
        ch.submitBatch(b);
        exec = vm.lastCallGas().gasTotalUsed;
        txGas = exec + _calldataGas(abi.encodeCall(ClearingHouse.submitBatch, (b)));
        assertEq(ch.lastWithdrawalId(), k);
    }

    function _escapeGas(uint256 depth) internal returns (uint256 exec, uint256 txGas) {
        address who = alice;
        uint256 amount = 1234e6;
        uint256 index = depth == 0 ? 0 : uint256(keccak256(abi.encode(depth))) % (1 << depth);
        SumTree.Node[] memory p = new SumTree.Node[](depth);
        bytes32 h = SumTree.leafHash(who, address(usdc), amount);
        uint256 s = amount;
        for (uint256 i; i < depth; ++i) {
            p[i] = SumTree.Node(keccak256(abi.encode("sibling", i)), 1e6 * (i + 1));
            h = (index >> i) & 1 == 0
                ? SumTree.nodeHash(h, s, p[i].hash, p[i].sum)
                : SumTree.nodeHash(p[i].hash, p[i].sum, h, s);
            s += p[i].sum;
        }
        _depositUncredited(bob, address(usdc), s); // the vault holds the whole tree's total
        ClearingHouse.Batch memory b = _batch();
        b.assets[0].root = h;
        b.assets[0].total = s;
        _submit(b);
        _freeze();
        ClearingHouse.AssetCommitment[] memory a = b.assets;
        _coolAll();
        vm.prank(who);
        ch.escapeWithdraw(a, 0, amount, index, p, who);
        exec = vm.lastCallGas().gasTotalUsed;
        txGas =
            exec + _calldataGas(abi.encodeCall(ClearingHouse.escapeWithdraw, (a, 0, amount, index, p, who)));
        assertEq(usdc.balanceOf(who), amount);
    }

    function test_gasReport_submitBatch_byWithdrawals() public {
        uint256[4] memory ks = [uint256(0), 1, 10, 50];
        console.log("submitBatch (3 listed assets) | withdrawals | exec gas | tx gas");
        for (uint256 i; i < ks.length; ++i) {
            uint256 snap = vm.snapshotState();
            (uint256 exec, uint256 txGas) = _submitGas(ks[i]);
            console.log("  withdrawals", ks[i], exec, txGas);
            vm.revertToState(snap);
        }
    }

    function test_gasReport_escape_byDepth() public {
        uint256[5] memory ds = [uint256(0), 1, 10, 17, 20];
        console.log("escapeWithdraw | depth | exec gas | tx gas");
        for (uint256 i; i < ds.length; ++i) {
            uint256 snap = vm.snapshotState();
            (uint256 exec, uint256 txGas) = _escapeGas(ds[i]);
            console.log("  depth", ds[i], exec, txGas);
            vm.revertToState(snap);
        }
    }

    function test_gasReport_deposit() public {
        usdc.mint(alice, 2e6);
        vm.startPrank(alice);
        usdc.approve(address(vault), 2e6);
        vault.deposit(address(usdc), 1e6, alice); // first deposit of the token creates its checkpoint trace
        _coolAll();
        vault.deposit(address(usdc), 1e6, alice);
        vm.stopPrank();
        Vm.Gas memory g = vm.lastCallGas();
        console.log("deposit (cold) exec gas", g.gasTotalUsed);
    }
}
